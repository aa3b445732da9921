"""The decode-once image cache: built on first use, reused, rebuilt when the folder changes, bypassed on request,
kept out of the user's folder, and never trusted when damaged."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from gankit.builtins.folder import FolderImages, scan_images
from gankit.cache import cache_directory
from gankit.errors import GankitWarning
from gankit.imagecache import SUFFIX, UnusableImage, load_images
from image_folders import fingerprint, write_image, write_noise

SIZE = 8


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    for index in range(5):
        write_noise(folder / f"{index}.png", size=(12, 10), seed=index)
    return folder


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "images").glob(f"*{SUFFIX}"))


def folder_images(folder: Path, **options) -> FolderImages:
    return FolderImages(root=str(folder), image_size=options.pop("image_size", SIZE), **options)


def test_cache_follows_the_gankit_cache_dir_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_directory() == tmp_path / "explicit"
    monkeypatch.delenv("GANKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "xdg" / "gankit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_directory() == tmp_path / "home" / ".cache" / "gankit"


def test_first_use_builds_later_uses_reuse(photos, cache_dir):
    first = folder_images(photos)
    assert first.built_cache
    [path] = cache_files(cache_dir)
    assert first.cache_path == path
    written = path.stat().st_mtime_ns
    second = folder_images(photos)
    assert not second.built_cache
    assert second.cache_path == path
    assert path.stat().st_mtime_ns == written
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    assert isinstance(second.images, np.memmap)  # read from the file, not decoded into memory


def test_reuse_does_not_decode(photos):
    files, _ = scan_images(photos)
    calls = []

    def decode(path):
        calls.append(path)
        return np.full((1, 2, 2), int(path.stem) + 1, dtype=np.uint8)

    options = dict(shape=(1, 2, 2), settings={"test": 1}, origin=photos)
    built = load_images(files, decode, **options)
    assert built.built and len(calls) == 5
    reused = load_images(files, decode, **options)
    assert not reused.built and len(calls) == 5
    assert reused.images[:, 0, 0, 0].tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("change", ["content", "mtime", "added", "removed"])
def test_a_changed_folder_rebuilds_and_replaces_the_old_cache(photos, cache_dir, change):
    before = folder_images(photos)
    old_path = before.cache_path
    target = photos / "2.png"
    if change == "content":
        write_image(target, size=(12, 10), color=(1, 2, 3))
    elif change == "mtime":
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    elif change == "added":
        write_image(photos / "9.png")
    else:
        target.unlink()
    after = folder_images(photos)
    assert after.built_cache
    assert cache_files(cache_dir) == [after.cache_path] != [old_path]
    expected = {"added": 6, "removed": 4}.get(change, 5)
    assert len(after) == expected
    if change == "content":
        assert after.images[2, :, 0, 0].tolist() == [1, 2, 3]


def test_each_image_size_has_its_own_cache(photos, cache_dir):
    small = folder_images(photos, image_size=8)
    large = folder_images(photos, image_size=12)
    assert small.shape == (3, 8, 8) and large.shape == (3, 12, 12)
    assert len(cache_files(cache_dir)) == 2
    assert not folder_images(photos, image_size=8).built_cache


def test_no_cache_writes_nothing_and_gives_the_same_images(photos, cache_dir):
    uncached = folder_images(photos, cache=False)
    assert uncached.cache_path is None
    assert not (cache_dir / "images").exists() or cache_files(cache_dir) == []
    cached = folder_images(photos)
    assert np.array_equal(np.asarray(uncached.images), np.asarray(cached.images))


def test_no_cache_reaches_the_data_source_through_the_registry(photos, cache_dir):
    from gankit.registry import default_registry

    built = default_registry().build("data", "folder", root=str(photos), image_size=SIZE, seed=0, cache=False)
    assert built.value.cache_path is None and len(built.value) == 5
    assert not (cache_dir / "images").exists()


def test_damaged_cache_is_rebuilt(photos, cache_dir):
    good = np.array(folder_images(photos).images)
    [path] = cache_files(cache_dir)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 7)
    again = folder_images(photos)
    assert again.built_cache
    assert np.array_equal(np.asarray(again.images), good)


def test_unwritable_cache_folder_warns_and_decodes_in_memory(photos, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(GankitWarning, match="cannot write the image cache"):
        source = folder_images(photos)
    assert source.cache_path is None and len(source) == 5


def test_skips_are_remembered_by_the_cache(photos):
    (photos / "broken.png").write_text("not an image")
    with pytest.warns(GankitWarning, match="skipped 1 of 6 files.*broken.png"):
        folder_images(photos)
    with pytest.warns(GankitWarning, match="skipped 1 of 6 files.*broken.png"):
        reused = folder_images(photos)
    assert not reused.built_cache
    assert len(reused) == 5 and "broken.png" not in reused.names


def test_cache_lives_outside_the_users_folder(photos, cache_dir):
    before = fingerprint(photos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder raises no warning at all
        source = folder_images(photos)
    assert cache_dir in source.cache_path.parents
    assert fingerprint(photos) == before


def test_decoder_reasons_become_skips(photos):
    files, _ = scan_images(photos)

    def decode(path):
        if path.name == "1.png":
            raise UnusableImage("not wanted")
        if path.name == "3.png":
            raise ValueError("broken header")
        return np.zeros((1, 2, 2), dtype=np.uint8)

    result = load_images(files, decode, shape=(1, 2, 2), settings={}, origin=photos, cache=False)
    assert result.names == ["0.png", "2.png", "4.png"]
    assert result.skipped == [("1.png", "not wanted"), ("3.png", "broken header")]


def test_full_disk_warns_and_decodes_in_memory(photos, monkeypatch):
    import errno

    from gankit import imagecache

    def no_space(handle, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imagecache, "_reserve", no_space)
    with pytest.warns(GankitWarning, match="No space left on device"):
        source = folder_images(photos)
    assert source.cache_path is None and len(source) == 5
    assert list((Path(os.environ["GANKIT_CACHE_DIR"]) / "images").glob("*")) == []  # no temporary file left
