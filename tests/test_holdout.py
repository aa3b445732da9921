"""Held-out images of the ``folder`` and ``anime`` sources (``holdout=N``) and the ``swd`` metric's reference:
the held-out images when there are any, a folder with ``swd:reference=DIR``, else the training data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gankit.batches import BatchStream
from gankit.builtins.anime import AnimeFaces
from gankit.builtins.folder import FolderImages
from gankit.builtins.metrics import SlicedWasserstein
from gankit.cli import app
from gankit.components import DataSource
from gankit.errors import GankitError
from gankit.imagecache import files_fingerprint
from gankit.images import scan_images
from image_folders import write_image, write_noise

runner = CliRunner()
TINY = ["--arch", "dcgan:width=8", "--image-size", "16", "--batch-size", "8", "--steps", "2", "--z-dim", "16",
        "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))


def numbered(folder: Path, count: int, white_from: int | None = None) -> Path:
    """``0.png`` ... ``{count-1}.png``; image i has red level i (white from ``white_from`` on)."""
    for index in range(count):
        white = white_from is not None and index >= white_from
        write_image(folder / f"{index}.png", size=(12, 12), color=(255, 255, 255) if white else (index, 0, 0))
    return folder


def red_levels(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# --- which images are held out ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", [FolderImages, AnimeFaces])
def test_holdout_keeps_exactly_the_last_files_in_natural_order_out_of_training(tmp_path, source):
    root = numbered(tmp_path / "faces", 12)  # natural order: 2.png before 10.png
    data = source(root=str(root), image_size=8, holdout=3)
    assert data.names == [f"{i}.png" for i in range(9)]
    assert data.held_out_names == ["9.png", "10.png", "11.png"]
    assert len(data) == 9 and red_levels(data.tensor()) == list(range(9))
    held_out = data.holdout_tensor()
    assert held_out.dtype == torch.uint8 and tuple(held_out.shape) == (3, 3, 8, 8)
    assert red_levels(held_out) == [9, 10, 11]
    with pytest.raises(IndexError):
        data[9]  # the first held-out image is not an item of the training set


def test_without_a_holdout_there_are_no_held_out_images(tmp_path):
    data = FolderImages(root=str(numbered(tmp_path / "f", 4)), image_size=8)
    assert data.holdout_tensor() is None and len(data) == 4
    assert DataSource().holdout_tensor() is None  # the interface's default


def test_limit_caps_the_training_images_and_leaves_the_held_out_ones_alone(tmp_path):
    data = AnimeFaces(root=str(numbered(tmp_path / "faces", 10)), image_size=8, holdout=3, limit=2)
    assert data.names == ["0.png", "1.png"] and data.held_out_names == ["7.png", "8.png", "9.png"]


def test_holdout_is_the_same_across_builds_with_and_without_the_cache(tmp_path):
    root = numbered(tmp_path / "f", 10)
    first = FolderImages(root=str(root), image_size=8, holdout=4)
    again = FolderImages(root=str(root), image_size=8, holdout=4)
    uncached = FolderImages(root=str(root), image_size=8, holdout=4, cache=False)
    assert first.built_cache and not again.built_cache and uncached.cache_path is None
    for other in (again, uncached):
        assert other.names == first.names and other.held_out_names == first.held_out_names
        assert torch.equal(other.tensor(), first.tensor())
        assert torch.equal(other.holdout_tensor(), first.holdout_tensor())
    # A run without a holdout decodes the same files: it reads the same cache file.
    whole = FolderImages(root=str(root), image_size=8)
    assert whole.cache_path == first.cache_path and not whole.built_cache


def test_the_fingerprint_changes_with_the_holdout_and_not_without_one(tmp_path):
    root = numbered(tmp_path / "f", 10)
    without = FolderImages(root=str(root), image_size=8).fingerprint()
    assert without == files_fingerprint(scan_images(root)[0])  # as before holdouts: old checkpoints still match
    three = FolderImages(root=str(root), image_size=8, holdout=3).fingerprint()
    assert three == FolderImages(root=str(root), image_size=8, holdout=3).fingerprint()
    assert len({without, three, FolderImages(root=str(root), image_size=8, holdout=4).fingerprint()}) == 3


def test_the_batch_stream_never_serves_a_held_out_image(tmp_path):
    data = FolderImages(root=str(numbered(tmp_path / "f", 24, white_from=20)), image_size=8, holdout=4)
    stream = BatchStream(data, 4, seed=0, device=torch.device("cpu"))
    batches = torch.cat([stream.next() for _ in range(50)])  # 10 epochs
    assert float(batches.max()) < 1.0  # white (1.0 after scaling) only in the held-out images
    assert len(torch.unique(batches[:, 0, 0, 0])) == 20  # every training image was served
    assert all(float(data[index].max()) < 1.0 for index in range(len(data)))
    assert float(data.holdout_tensor().min()) == 255


# --- bad values: one line --------------------------------------------------------------------------------


def run_folder(root: Path, data_spec: str, *extra: str, out: Path | None = None):
    out = out or root.parent / "run"
    return runner.invoke(app, ["run", "--data", data_spec, "--data-root", str(root), *TINY, *extra, "--out", str(out)])


@pytest.mark.parametrize("value, expected", [
    ("-1", "holdout must be 0 (none) or a positive number of images, got -1"),
    ("abc", "option 'holdout' must be int, got 'abc'"),
    ("1.5", "option 'holdout' must be int, got '1.5'"),
    ("", "option 'holdout' must be int"),
    ("10", "holdout=10 leaves no image to train on: the folder holds 10 image files"),
    ("11", "holdout=11 leaves no image to train on"),
    ("3", "the data has 7 examples, fewer than the batch size 8, besides 3 held out for evaluation"),
])
def test_bad_holdouts_end_the_run_in_one_line(tmp_path, value, expected):
    root = numbered(tmp_path / "f", 10)
    assert expected in one_line_error(run_folder(root, f"folder:holdout={value}"))


def test_bad_holdout_from_python_is_a_gankit_error(tmp_path):
    root = numbered(tmp_path / "f", 4)
    for value in (True, -2, 2.0):
        with pytest.raises(GankitError, match="holdout must be"):
            FolderImages(root=str(root), image_size=8, holdout=value)


def test_held_out_files_that_are_all_broken_are_refused(tmp_path):
    root = numbered(tmp_path / "f", 4)
    (root / "9.png").write_text("not an image")
    with pytest.warns(Warning, match="skipped 1"), pytest.raises(GankitError, match="none of the 1 held-out files"):
        FolderImages(root=str(root), image_size=8, holdout=1)


# --- swd against the held-out images ---------------------------------------------------------------------


class HeldOut(DataSource):
    """Training images and held-out images chosen by the test."""

    def __init__(self, training: torch.Tensor, held_out: torch.Tensor | None) -> None:
        self.training, self.held_out = training, held_out
        self.shape = tuple(training.shape[1:])

    def tensor(self):
        return self.training

    def holdout_tensor(self):
        return self.held_out


def noise_images(count: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_swd_compares_with_the_held_out_images_and_says_so():
    metric = SlicedWasserstein(patches_per_image=16, directions=16, repeats=1)
    held_out = noise_images(1, 1).repeat(20, 1, 1, 1)  # in any order the same as the samples
    smooth = torch.zeros(40, 3, 16, 16, dtype=torch.uint8)  # nothing like the samples
    samples = held_out.float() / 127.5 - 1.0
    against_held_out = metric.evaluate(samples, data=HeldOut(smooth, held_out))
    assert against_held_out["held_out"] == 1.0 and against_held_out["reference_images"] == 20
    assert against_held_out["swd"] == pytest.approx(0.0, abs=1e-6)  # the samples are the held-out images
    against_training = metric.evaluate(samples, data=HeldOut(smooth, None))
    assert against_training["held_out"] == 0.0 and against_training["reference_images"] == 20
    assert against_training["swd"] > 1.0


def test_a_run_with_a_holdout_scores_swd_against_it_during_training(tmp_path):
    root = tmp_path / "f"
    for index in range(30):
        write_noise(root / f"{index}.png", size=(16, 16), seed=index)
    result = run_folder(root, "folder:holdout=6", "--eval-every", "2", "--metric", "swd", "--eval-count", "32")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "eval.jsonl").read_text().splitlines()[-1])
    assert record["held_out"] == 1.0 and record["reference_images"] == 6
    # gankit eval rebuilds the data with its holdout from the run's config.
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--metric", "swd", "-n", "16", "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["held_out"] == 1.0 and values["reference_images"] == 6


# --- swd:reference=DIR -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = runner.invoke(app, ["run", "--data", "digits:count=64", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def evaluate(run: Path, spec: str, *extra: str):
    return runner.invoke(app, ["eval", str(run), "--metric", spec, "-n", "24", *extra])


def test_swd_reference_folder_is_decoded_at_the_runs_size_and_channels(digits_run, tmp_path):
    for index in range(10):
        write_noise(tmp_path / "ref" / f"{index}.png", size=(40, 30), seed=index)  # RGB, not 16 px
    result = evaluate(digits_run, f"swd:reference={tmp_path / 'ref'}", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["reference_images"] == 10 and values["held_out"] == 0.0 and values["swd"] > 0
    training = json.loads(evaluate(digits_run, "swd", "--json").output)["values"]
    assert training["reference_images"] == 24 and training["swd"] != values["swd"]


def test_swd_reference_problems_are_one_line(digits_run, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no images")
    (tmp_path / "file.png").write_text("a file")
    assert "reference needs a folder" in one_line_error(evaluate(digits_run, "swd:reference="))
    assert "not found" in one_line_error(evaluate(digits_run, f"swd:reference={tmp_path / 'missing'}"))
    assert "holds no images" in one_line_error(evaluate(digits_run, f"swd:reference={tmp_path / 'empty'}"))
    assert "holds no images" in one_line_error(evaluate(digits_run, f"swd:reference={tmp_path / 'notes'}"))
    assert "is a file" in one_line_error(evaluate(digits_run, f"swd:reference={tmp_path / 'file.png'}"))


def test_swd_reference_refuses_shapes_it_cannot_decode_to(tmp_path):
    write_image(tmp_path / "ref" / "a.png")
    for shape in ((3, 16, 24), (2, 16, 16)):
        with pytest.raises(GankitError, match="square grayscale or RGB"):
            SlicedWasserstein(reference=str(tmp_path / "ref")).check(shape=shape, data=None)


def test_nearest_faces_measures_a_run_against_its_training_and_held_out_images(tmp_path, capsys):
    import importlib.util

    root = tmp_path / "f"
    for index in range(30):
        write_noise(root / f"{index}.png", size=(16, 16), seed=index)
    assert run_folder(root, "folder:holdout=10").exit_code == 0
    spec = importlib.util.spec_from_file_location("nearest_faces", Path(__file__).parents[1] / "scripts" / "nearest_faces.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path / "run"), "-n", "8"]) == 0
    baseline, measured = capsys.readouterr().out.splitlines()
    assert baseline.startswith("real held-out images (5): nearest training image ")  # half the holdout each
    assert "(8 samples): nearest training image" in measured and "ratio" in measured and "nearer a training image" in measured
    # The distances are on the generator's [-1, 1] scale: 16 x 16 x 3 values, so at most 2 * sqrt(768).
    assert 0 < float(measured.split("nearest training image ")[1].split(",")[0]) <= 2 * 768 ** 0.5
