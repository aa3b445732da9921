"""A corpus of bad data and faults around it: data folders, sizes and options, the image cache, signals.

Each table adds a case in one line. A refused input gives a non-zero exit, one ``Error:`` line naming the
problem, no traceback, and touches neither the user's folder nor the cache (the check runs before decoding).
A damaged cache is rebuilt with one warning; a killed cache build leaves nothing that the next run keeps.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import gankit.memory
from gankit import imagecache
from gankit.builtins import digits
from gankit.builtins.folder import FolderImages
from gankit.cache import cache_temporary, remove_stale_temporaries
from gankit.cli import app
from gankit.errors import GankitWarning
from image_folders import fingerprint, write_image, write_noise

REPO = Path(__file__).resolve().parents[1]
TINY = ["--batch-size", "2", "--steps", "1", "--z-dim", "8", "--device", "cpu", "--quiet"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(folder))
    return folder


def photos(work: Path, count: int = 4, size=(20, 20)) -> Path:
    for index in range(count):
        write_noise(work / "photos" / f"{index}.png", size=size, seed=index)
    return work / "photos"


def empty_pngs(work: Path) -> Path:
    for index in range(3):
        (work / "photos").mkdir(exist_ok=True)
        (work / "photos" / f"{index}.png").write_bytes(b"")
    return work / "photos"


def a_file(work: Path) -> Path:
    return write_image(work / "one.png")


# -- refused before any data is decoded --------------------------------------------------------------------


@dataclass
class Refused:
    name: str
    make_root: Callable[[Path], Path] | None  # the --data-root, if any
    args: tuple[str, ...]
    fragments: tuple[str, ...]
    available_memory: int | None = None  # pretend this much memory is available


REFUSED = [
    # case 16: sizes an architecture cannot serve fail before the folder is decoded or the digits drawn
    Refused("folder-size-33", photos, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "33"),
            ("dcgan supports", "33x33")),
    Refused("dcgan-512", None, ("--data", "digits:count=64", "--arch", "dcgan:width=4", "--image-size", "512"),
            ("dcgan supports", "512x512")),
    Refused("wgan-512", None, ("--data", "digits:count=64", "--arch", "wgan:width=4", "--image-size", "512"),
            ("wgan supports", "512x512")),
    Refused("dcgan-4096-folder", photos, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "4096"),
            ("at most 2048", "4096")),
    Refused("digits-4096", None, ("--data", "digits:count=64", "--arch", "mlp", "--image-size", "4096"),
            ("at most 2048",)),
    Refused("digits-count-1e9", None, ("--data", "digits:count=1000000000", "--arch", "dcgan:width=4"),
            ("not enough memory", "1000000000 digits", "available")),
    Refused("folder-memory", photos, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "64"),
            ("not enough memory", "4 images of 3x64x64", "49.2 KB", "networks", "1.0 KB available"), 1000),
    Refused("image-size-0", photos, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "0"),
            ("image-size",)),
    Refused("image-size-negative", photos, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "-1"),
            ("-1",)),
    Refused("image-size-huge", photos, ("--data", "folder", "--arch", "mlp", "--image-size", str(10**12)),
            ("at most 2048",)),
    Refused("folder-limit-negative", photos, ("--data", "folder:limit=-5", "--arch", "dcgan:width=4"),
            ("limit must be 0", "-5")),
    Refused("channels-2", photos, ("--data", "folder:channels=2", "--arch", "dcgan:width=4"), ("channels must be 1",)),
    Refused("digits-count-0", None, ("--data", "digits:count=0", "--arch", "dcgan:width=4"), ("count must be >= 1",)),
    Refused("zero-byte-pngs", empty_pngs, ("--data", "folder", "--arch", "dcgan:width=4", "--image-size", "16"),
            ("no usable image", "empty file")),
    Refused("root-is-a-file", a_file, ("--data", "folder", "--arch", "dcgan:width=4"), ("is a file",)),
    Refused("anime-size-33", photos, ("--data", "anime", "--arch", "dcgan:width=4", "--image-size", "33"),
            ("dcgan supports", "33x33")),
    Refused("anime-recipe-unknown", photos, ("--data", "anime:recipe=gpu", "--arch", "dcgan:width=4"),
            ("recipe must be one of cpu, article", "'gpu'")),
]


@pytest.mark.parametrize("case", REFUSED, ids=[case.name for case in REFUSED])
def test_refused_before_the_data_is_touched(case, tmp_path, cache, monkeypatch, one_thread):
    work = tmp_path / "work"
    work.mkdir()
    args = ["run", *case.args, *TINY, "--out", str(work / "run")]
    if case.make_root is not None:
        args += ["--data-root", str(case.make_root(work))]
    if case.available_memory is not None:
        monkeypatch.setattr(gankit.memory, "available_bytes", lambda: case.available_memory)
    before = fingerprint(work)
    result = CliRunner().invoke(app, args)
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in case.fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert fingerprint(work) == before
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "the data was decoded"


def test_an_architecture_size_error_decodes_nothing(tmp_path, cache, monkeypatch):
    """Case 16: the size check runs before the first image is opened (also with a large folder)."""
    from gankit import images as folder_module

    opened = []
    monkeypatch.setattr(folder_module, "open_image_file", lambda path: opened.append(path) or open(path, "rb"))
    root = photos(tmp_path)
    result = CliRunner().invoke(app, ["run", "--data", "folder", "--data-root", str(root), "--image-size", "33",
                                      "--arch", "dcgan:width=4", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "33x33" in result.output
    assert opened == []


def test_the_size_check_leaves_seeded_runs_unchanged(tmp_path, cache, one_thread):
    """The early check builds the networks on the meta device: no random draws, the same weights as before."""
    import torch

    from gankit.config import RunConfig
    from gankit.engine import Trainer, seed_everything

    config = RunConfig.from_sources(overrides={"arch": "dcgan:width=4", "data": "digits:count=64", "z_dim": 8,
                                               "device": "cpu", "seed": 3})
    trainer = Trainer(config)
    seed_everything(3)
    from gankit.builtins.dcgan import dcgan

    generator, _ = dcgan(shape=(1, 32, 32), z_dim=8, width=4)
    for mine, fresh in zip(trainer.generator.state_dict().values(), generator.state_dict().values()):
        assert torch.equal(mine, fresh)


# -- case 6: damaged caches are detected and rebuilt --------------------------------------------------------


def flip_pixel_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def zero_pixels(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[: 16 * 16 * 3] = bytes(16 * 16 * 3)  # the first image black: the trailer is intact
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])


def old_format(path: Path) -> None:
    """A version-1 file (no checksums) at the name a version-1 build would use."""
    group = path.name.rsplit("-", 1)[0]  # the folder and settings; the key after it includes the format version
    path.rename(path.with_name(f"{group}-00000000000000000000.gkimg"))


def directory_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def fifo_instead(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


DAMAGES = {  # damage -> words of the first warning (None: rebuilt without a warning)
    "one-flipped-pixel-byte": (flip_pixel_byte, "pixel checksum mismatch"),
    "zeroed-image-intact-trailer": (zero_pixels, "pixel checksum mismatch"),
    "truncated-trailer": (truncate, "truncated"),
    "old-format-without-checksums": (old_format, None),
    # not replaceable by a file: a second warning says the images are decoded into memory
    "directory-at-the-cache-path": (directory_instead, "not a regular file"),
    "fifo-at-the-cache-path": (fifo_instead, "not a regular file"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_cache_is_rebuilt_with_one_warning(damage, tmp_path, cache):
    root = photos(tmp_path)
    fresh = FolderImages(root=str(root), image_size=16)
    expected = np.array(fresh.images)
    damage_file, words = DAMAGES[damage]
    damage_file(fresh.cache_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = FolderImages(root=str(root), image_size=16)
    reports = [str(w.message) for w in caught if issubclass(w.category, GankitWarning)]
    assert np.array_equal(np.array(again.images), expected)
    if words is None:
        assert again.built_cache and reports == []
        assert [p.name for p in (cache / "images").iterdir()] == [again.cache_path.name]  # the old file is gone
    else:
        assert words in reports[0] and "rebuilding" in reports[0], reports
        assert len(reports) == 1 or (damage == "directory-at-the-cache-path" and "into memory" in reports[1])
        assert all("\n" not in report for report in reports)


# -- case 7 and 21: temporaries of dead writers, signals during the build ---------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


TEMPORARIES = [  # (name of the case, how the temporary was left, removed when the cache is opened?)
    ("dead-writer", lambda folder, live: folder / f"x.gkimg.pid{dead_pid()}.abcd1234.tmp", True),
    ("live-writer", lambda folder, live: folder / f"x.gkimg.pid{live.pid}.abcd1234.tmp", False),
    ("not-ours", lambda folder, live: folder / "notes.tmp", False),
]


@pytest.mark.parametrize("case", TEMPORARIES, ids=[case[0] for case in TEMPORARIES])
def test_opening_the_cache_removes_only_dead_writers_temporaries(case, tmp_path, cache, live_process):
    _, make, removed = case
    folder = cache / "images"
    folder.mkdir(parents=True)
    temp = make(folder, live_process)
    temp.write_bytes(b"\0" * 1000)
    FolderImages(root=str(photos(tmp_path)), image_size=16)
    assert temp.exists() != removed


def test_a_locked_temporary_is_kept_even_when_its_pid_looks_dead(tmp_path):
    """A writer in another PID namespace (a container sharing the cache) has a PID that means nothing here."""
    with cache_temporary(tmp_path / "x.gkimg") as (_, temp):
        renamed = temp.with_name(f"x.gkimg.pid{dead_pid()}.abcd1234.tmp")
        temp.rename(renamed)
        assert remove_stale_temporaries(tmp_path) == []
        assert renamed.exists()
    assert remove_stale_temporaries(tmp_path) == [renamed]


def test_stale_digits_temporary_is_removed(tmp_path, cache):
    cache.mkdir()
    stale = cache / f"digits-v1-seed0-n64-32px.npz.pid{dead_pid()}.abcd1234.tmp"
    stale.write_bytes(b"\0" * 1000)
    digits.load_digits(64)
    assert not stale.exists()
    assert not list(cache.glob("*.tmp"))


SLOW_BUILD = """
import os, sys, time
from pathlib import Path
from gankit import images
from gankit.builtins import rendered_digits

def slowly(function):
    def slow(*args, **kwargs):
        Path(os.environ["BUILD_STARTED"]).touch()  # the test signals once it sees this
        time.sleep(0.05)
        return function(*args, **kwargs)
    return slow

images.read_image, rendered_digits._render_one = slowly(images.read_image), slowly(rendered_digits._render_one)
sys.argv = ["gankit", *sys.argv[1:]]
from gankit.cli import main
main()
"""

SIGNALS = [  # (data, signal, exit code, words of the one line)
    ("folder", signal.SIGTERM, 130, "SIGTERM received while building the image cache"),
    ("folder", signal.SIGINT, 130, "SIGINT received while building the image cache"),
    ("folder", signal.SIGKILL, -9, None),
    ("digits:count=400", signal.SIGTERM, 130, "SIGTERM received while rendering the digits dataset"),
    ("digits:count=400", signal.SIGINT, 130, "SIGINT received while rendering the digits dataset"),
]


def heed_ctrl_c() -> None:
    """In the child: SIGINT as in a terminal. A test run started in the background (``&`` in a script) inherits
    SIGINT ignored, and Python then never raises KeyboardInterrupt, as a backgrounded gankit rightly would not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("case", SIGNALS, ids=[f"{c[0].split(':')[0]}-{c[1].name}" for c in SIGNALS])
def test_a_signal_during_the_cache_build_leaves_no_temporary(case, tmp_path, cache):
    data, number, code, words = case
    started = tmp_path / "started"
    root = ["--data-root", str(photos(tmp_path, count=200, size=(8, 8)))] if data == "folder" else []
    command = [sys.executable, "-c", SLOW_BUILD, "run", "--data", data, *root, "--arch", "dcgan:width=4", "--image-size", "16", *TINY,
               "--out", str(tmp_path / "run")]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "GANKIT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
                   "BUILD_STARTED": str(started)}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=heed_ctrl_c)
    while process.poll() is None and not started.exists():
        time.sleep(0.01)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    if words is not None:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0] and lines[0].startswith("Interrupted: "), stderr
        assert not list(cache.rglob("*.tmp"))
    else:  # SIGKILL cannot clean up: the next open does
        assert list(cache.rglob("*.tmp"))
        FolderImages(root=root[1], image_size=32)
        assert not list(cache.rglob("*.tmp"))


# -- case 8: 16-bit images scaled by bit depth ------------------------------------------------------------


SIXTEEN_BIT = [  # (name, 16-bit values, expected 8-bit values)
    ("all-255", np.full((8, 8), 255, np.uint16), np.full((8, 8), 1)),
    ("all-256", np.full((8, 8), 256, np.uint16), np.full((8, 8), 1)),
    ("all-65535", np.full((8, 8), 65535, np.uint16), np.full((8, 8), 255)),
    ("all-0", np.zeros((8, 8), np.uint16), np.zeros((8, 8))),
    ("gradient", (np.arange(64, dtype=np.uint16) * 4 * 257).reshape(8, 8), (np.arange(64) * 4).reshape(8, 8)),
]


@pytest.mark.parametrize("case", SIXTEEN_BIT, ids=[case[0] for case in SIXTEEN_BIT])
def test_sixteen_bit_images_are_scaled_by_bit_depth(case, tmp_path, cache):
    _, values, expected = case
    folder = tmp_path / "deep"
    folder.mkdir()
    Image.fromarray(values).save(folder / "image.png")
    assert Image.open(folder / "image.png").mode.startswith("I")
    source = FolderImages(root=str(folder), image_size=8, channels=1)
    assert np.array_equal(source.images[0, 0], expected.astype(np.uint8))


# -- more hostile inputs: handled, not refused ------------------------------------------------------------


def palette_with_transparency(folder: Path) -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 5, 10, 10))
    image.save(folder / "p.png", transparency=0)


def very_thin(folder: Path) -> None:
    Image.new("RGB", (1, 100000), (0, 0, 255)).save(folder / "thin.png")


def cmyk_jpeg(folder: Path) -> None:
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(folder / "c.jpg")


def int32_tiff_as_png_suffix(folder: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 2**30, np.int32)).save(buffer, "TIFF")
    (folder / "i32.bmp").write_bytes(buffer.getvalue())  # a TIFF under an image suffix: Pillow reads it


HANDLED = [  # (name, write files into the folder, check the decoded images (N, C, 8, 8))
    ("palette-transparency", palette_with_transparency,
     lambda images: images[0, :, 1, 4].tolist() == [255, 255, 255] and images[0, :, 7, 4].tolist() == [255, 0, 0]),
    ("1x100000-pixels", very_thin, lambda images: images[0, :, 4, 4].tolist() == [0, 0, 255]),
    ("cmyk-jpeg", cmyk_jpeg, lambda images: images[0, 0, 4, 4] > 200 and images[0, 1, 4, 4] < 60),
    ("int32-image", int32_tiff_as_png_suffix, lambda images: images[0, 0, 4, 4] == 128),
]


@pytest.mark.parametrize("case", HANDLED, ids=[case[0] for case in HANDLED])
def test_odd_images_decode_to_the_expected_pixels(case, tmp_path, cache):
    _, write, check = case
    folder = tmp_path / "odd"
    folder.mkdir()
    write(folder)
    source = FolderImages(root=str(folder), image_size=8)
    assert check(source.images)


def test_two_processes_building_one_cache_at_once(tmp_path, cache):
    root = photos(tmp_path, count=40, size=(8, 8))
    code = textwrap.dedent(f"""
        from gankit.builtins.folder import FolderImages
        FolderImages(root={str(root)!r}, image_size=16)
    """)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "GANKIT_CACHE_DIR": str(cache)}
    processes = [subprocess.Popen([sys.executable, "-c", code], env=environment, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert [p.suffix for p in (cache / "images").iterdir()] == [".gkimg"]
    source = FolderImages(root=str(root), image_size=16)
    assert not source.built_cache and len(source) == 40


def test_a_read_only_cache_folder_decodes_into_memory(tmp_path, cache, monkeypatch):
    """Root writes anywhere, so the read-only folder is simulated where the temporary file is created."""
    import gankit.cache

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(gankit.cache.os, "open", read_only)
    with pytest.warns(GankitWarning, match="cannot write the image cache .*Read-only file system"):
        source = FolderImages(root=str(photos(tmp_path)), image_size=16)
    assert source.cache_path is None and len(source) == 4


def test_a_symlink_loop_in_the_data_folder_is_skipped(tmp_path, cache):
    root = photos(tmp_path)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "self.png").symlink_to(root / "self.png")
    with pytest.warns(GankitWarning, match="skipped 2 of 6"):
        source = FolderImages(root=str(root), image_size=16)
    assert len(source) == 4


def test_a_decompression_bomb_is_skipped(tmp_path, cache):
    from test_bad_images import bomb_png

    root = photos(tmp_path)
    bomb_png(root / "bomb.png", 50000, 50000)
    with pytest.warns(GankitWarning, match="too large"):
        source = FolderImages(root=str(root), image_size=16)
    assert len(source) == 4


def test_an_interrupted_build_keeps_the_old_cache_of_another_size(tmp_path, cache, monkeypatch):
    """Ctrl-C while building one size removes only this build's temporary file."""
    root = photos(tmp_path)
    kept = FolderImages(root=str(root), image_size=16).cache_path
    from gankit import images as folder_module
    from gankit.signals import Interrupted

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_module, "read_image", interrupted)
    with pytest.raises(Interrupted, match="SIGINT received while building the image cache"):
        FolderImages(root=str(root), image_size=32)
    assert sorted(p.name for p in (cache / "images").iterdir()) == [kept.name]
