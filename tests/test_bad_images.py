"""Bad files never stop a run: each is converted or skipped, skips are counted and reported once, and the
user's folder is never changed. Folders that cannot serve at all fail with one line."""
from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gankit import images as folder_module
from gankit.builtins.folder import FolderImages
from gankit.errors import GankitError, GankitWarning
from image_folders import fingerprint, write_image, write_noise

SIZE = 16


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(folder))
    return folder


def bomb_png(path: Path, width=20000, height=20000) -> None:
    """A valid PNG whose header claims ``width x height`` pixels (a decompression bomb to Pillow)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


USABLE = {
    "good.jpg", "nested/deeper/good2.png", "cmyk.jpg", "palette.png", "rgba.png", "sixteen.png", "gray.jpg",
    "huge.jpg", "anim.gif", "pic.webp", "pic.bmp",
}
SKIPPED = {"truncated.jpg", "empty.jpg", "notes.png", "bomb.png", "unreadable.jpg", "a.jpg", "b.jpg", "gone.jpg", "loop"}


@pytest.fixture
def bad_folder(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "scraped"
    write_image(root / "good.jpg", size=(40, 30))
    write_image(root / "nested" / "deeper" / "good2.png", color=(10, 200, 10))
    whole = write_noise(tmp_path / "whole.jpg", size=(64, 64)).read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("this is not an image\n")
    write_image(root / "cmyk.jpg", mode="CMYK", color=(0, 255, 255, 0))  # red in CMYK
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    palette.paste(0, (0, 0, 20, 10))
    palette.save(root / "palette.png", transparency=0)  # top half transparent
    write_image(root / "rgba.png", mode="RGBA", color=(255, 0, 0, 0))  # fully transparent
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(root / "sixteen.png")
    write_image(root / "gray.jpg", mode="L", color=90)
    write_image(root / "huge.jpg", size=(3000, 2000), color=(20, 20, 220))
    bomb_png(root / "bomb.png")
    frames = [Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    write_image(root / "pic.webp")
    write_image(root / "pic.bmp")
    (root / "readme.txt").write_text("not an image suffix: ignored, not counted")
    unreadable = write_image(root / "unreadable.jpg")
    unreadable.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the open fail as it does for everyone else
        real_open = folder_module.open_image_file

        def refuse(path):
            if Path(path).name == "unreadable.jpg":
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path)

        monkeypatch.setattr(folder_module, "open_image_file", refuse)
    (root / "a.jpg").symlink_to("b.jpg")
    (root / "b.jpg").symlink_to("a.jpg")
    (root / "gone.jpg").symlink_to("missing.jpg")
    (root / "loop").symlink_to(".", target_is_directory=True)
    yield root
    unreadable.chmod(0o644)


def load(folder: Path, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = FolderImages(root=str(folder), image_size=SIZE, **options)
    return source, [w for w in caught if issubclass(w.category, GankitWarning)]


def pixel(source, name: str) -> np.ndarray:
    """The decoded centre pixel of one file, channels last."""
    return source.images[source.names.index(name)][:, SIZE // 2, SIZE // 2]


def test_each_bad_file_is_converted_or_skipped_and_counted_once(bad_folder):
    before = fingerprint(bad_folder)
    source, reports = load(bad_folder)
    assert set(source.names) == USABLE
    assert {name for name, _ in source.skipped} == SKIPPED
    assert source.tensor().shape == (len(USABLE), 3, SIZE, SIZE)
    assert len(reports) == 1
    message = str(reports[0].message)
    assert "\n" not in message
    assert f"skipped {len(SKIPPED)} of {len(USABLE) + len(SKIPPED)} files" in message
    assert f"and {len(SKIPPED) - 3} more" in message
    named = [name for name, _ in source.skipped[:3]]
    assert all(name in message for name in named)
    assert fingerprint(bad_folder) == before


def test_reasons_say_what_is_wrong(bad_folder):
    source, _ = load(bad_folder)
    reasons = dict(source.skipped)
    assert reasons["empty.jpg"] == "empty file"
    assert "not an image" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.jpg"]
    assert "too large" in reasons["bomb.png"]
    assert "unreadable" in reasons["unreadable.jpg"]
    assert "symlink" in reasons["a.jpg"] and "symlink" in reasons["gone.jpg"]
    assert "loop" in reasons["loop"]


def test_conversions_give_the_expected_colours(bad_folder):
    source, _ = load(bad_folder)
    assert pixel(source, "rgba.png").tolist() == [255, 255, 255]  # transparent: white
    top, bottom = (source.images[source.names.index("palette.png")][:, y, SIZE // 2] for y in (2, SIZE - 3))
    assert top.tolist() == [255, 255, 255] and bottom.tolist() == [0, 0, 255]
    assert pixel(source, "sixteen.png").tolist() == [255, 255, 255]  # 16-bit white stays white, not clipped
    assert pixel(source, "anim.gif").tolist() == [255, 0, 0]  # the first frame
    red, green, blue = pixel(source, "cmyk.jpg").tolist()
    assert red > 200 and green < 60 and blue < 60
    gray = pixel(source, "gray.jpg").tolist()
    assert gray[0] == gray[1] == gray[2] and abs(gray[0] - 90) <= 2
    red, green, blue = pixel(source, "huge.jpg").tolist()
    assert blue > 180 and red < 60


def test_grayscale_channel_option(bad_folder):
    source, _ = load(bad_folder, channels=1)
    assert source.shape == (1, SIZE, SIZE)
    assert source.tensor().shape == (len(USABLE), 1, SIZE, SIZE)
    assert pixel(source, "sixteen.png").tolist() == [255]


def test_sixteen_bit_values_are_scaled_not_clipped(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)).save(folder / "mid.png")  # 32896 / 257 = 128
    source, reports = load(folder, channels=1)
    assert source.images[0, 0, 0, 0] == 128
    assert reports == []


def test_the_run_goes_on_with_bad_files(bad_folder, tmp_path):
    from gankit.config import RunConfig
    from gankit.engine import Trainer

    before = fingerprint(bad_folder)
    config = RunConfig.from_sources(
        overrides={
            "arch": "dcgan:width=4", "data": "folder", "data_root": str(bad_folder), "image_size": SIZE,
            "batch_size": 4, "steps": 2, "z_dim": 8, "device": "cpu", "sample_every": 2, "checkpoint_every": 2,
        }
    )
    with pytest.warns(GankitWarning, match=f"skipped {len(SKIPPED)} of"):
        trainer = Trainer(config)
    out = trainer.train(tmp_path / "run")
    assert (out / "checkpoints").is_dir()
    assert fingerprint(bad_folder) == before


# -- folders that cannot serve: one line, non-zero exit ---------------------------------------------------


def run_cli(tmp_path, root) -> str:
    from typer.testing import CliRunner

    from gankit.cli import app

    result = CliRunner().invoke(
        app, ["run", "--data", "folder", "--data-root", str(root), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_missing_path_is_one_line_error(tmp_path):
    line = run_cli(tmp_path, tmp_path / "nowhere")
    assert "not found" in line and "--data-root" in line


def test_path_that_is_a_file_is_one_line_error(tmp_path):
    image = write_image(tmp_path / "one.png")
    line = run_cli(tmp_path, image)
    assert "is a file" in line


def test_folder_without_usable_image_is_one_line_error(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_text("text")
    line = run_cli(tmp_path, folder)
    assert "no usable image" in line and "2 files skipped" in line


def test_folder_without_images_is_one_line_error(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(GankitError, match="holds no images"):
        FolderImages(root=str(folder))


def test_cli_reports_skips_as_one_warning_line_and_no_cache_writes_nothing(tmp_path, private_cache):
    from typer.testing import CliRunner

    from gankit.cli import app

    folder = tmp_path / "few"
    for index in range(4):
        write_image(folder / f"{index}.png", color=(index * 60, 0, 0))
    (folder / "broken.jpg").write_text("not a jpeg")
    result = CliRunner().invoke(
        app,
        ["run", "--data", "folder", "--data-root", str(folder), "--image-size", "16", "--no-cache",
         "--arch", "dcgan:width=4", "--batch-size", "2", "--steps", "1", "--z-dim", "8", "--device", "cpu",
         "--out", str(tmp_path / "run"), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    warning_lines = [line for line in result.output.splitlines() if line.startswith("Warning: ")]
    assert len(warning_lines) == 1 and "skipped 1 of 5 files" in warning_lines[0] and "broken.jpg" in warning_lines[0]
    assert not (private_cache / "images").exists()
