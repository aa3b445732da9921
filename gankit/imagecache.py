"""Decode once: images decoded to uint8 arrays and kept in a memory-mapped cache file, reused across runs.

A cache file is keyed by the image files' names, sizes and modification times and by the decoding settings
(image size, channels...), so a changed folder or another image size gets a new file; stale files of the same
folder and settings are removed. The file is the raw ``(N, C, H, W)`` uint8 array followed by a JSON trailer
that holds a CRC-32 of every block of it, written to a temporary file and renamed into place, so a crash never
leaves a half-written cache behind. Opening a cache verifies every checksum (about 1/100 of the decoding time,
docs/data.md); a damaged file is rebuilt with a one-line warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from gankit.cache import cache_directory, cache_temporary, remove_stale_temporaries
from gankit.errors import GankitWarning
from gankit.signals import Interrupted, signal_name

# Bump when the file layout or the decoding changes, so that old cache files are no longer used.
# 2: a CRC-32 per block of pixels in the trailer.
FORMAT_VERSION = 2
SUFFIX = ".gkimg"
_MAGIC = b"GKIMG\x00v2"
# Pixels per checksum: a damaged block names where the damage is; the block size barely changes the cost.
CHECKSUM_BLOCK = 8 << 20
_TRAILER = struct.Struct("<Q8s")  # JSON length, magic
# Files decoded per round: bounds the decoded arrays waiting in memory to be copied into the cache.
_CHUNK = 512

Progress = Callable[[int, int], None]


class UnusableImage(Exception):
    """Raised by a decoder for a file that is not a usable image; the message is the short reason."""


@dataclass(frozen=True)
class ImageFile:
    """One image file: ``path`` to read, ``name`` (relative, for keys and messages), size and mtime."""

    path: Path
    name: str
    size: int
    mtime_ns: int


@dataclass
class DecodedImages:
    """Decoded images ``(N, *shape)`` uint8 (a memory map when cached) and the files that were skipped."""

    images: np.ndarray
    names: list[str]  # the usable files, in the order of ``images``
    skipped: list[tuple[str, str]]  # (name, reason)
    cache_path: Optional[Path]  # None when not cached
    built: bool  # True when decoded by this call, False when read from an existing cache file


def cache_key(files: Sequence[ImageFile], settings: dict) -> str:
    """A digest of everything the decoded array depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT_VERSION, "settings": settings}, sort_keys=True).encode())
    for file in files:
        digest.update(f"\n{file.name}\t{file.size}\t{file.mtime_ns}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def files_fingerprint(files: Sequence[ImageFile]) -> str:
    """A digest of which files there are (names and sizes). Unlike :func:`cache_key` it leaves out the times,
    so a copy of the folder to another disk keeps its fingerprint."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\t{file.size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_group(origin: Path, settings: dict) -> str:
    """The part of a cache file's name shared by every version of one folder at one setting."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", origin.name)[:40] or "images"
    identity = json.dumps({"origin": str(origin), "settings": settings}, sort_keys=True)
    return f"{slug}-{hashlib.sha256(identity.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def load_images(
    files: Sequence[ImageFile],
    decode: Callable[[Path], np.ndarray],
    *,
    shape: tuple[int, ...],
    settings: dict,
    origin: Path,
    cache: bool = True,
    cache_dir=None,
    progress: Optional[Progress] = None,
    workers: Optional[int] = None,
) -> DecodedImages:
    """Decode ``files`` with ``decode(path) -> uint8 array of shape`` (raising :class:`UnusableImage` to skip),
    or read them from the cache file for this exact set of files and ``settings``.

    With ``cache=False`` nothing is read or written: the images are decoded into memory. A cache folder that
    cannot be written is not an error: a warning says so and the images are decoded into memory.
    """
    shape = tuple(int(s) for s in shape)
    settings = {**settings, "shape": list(shape)}
    if not cache:
        return _decode_all(files, decode, shape, None, progress, workers)
    folder = cache_directory(cache_dir) / "images"
    key = cache_key(files, settings)
    group = cache_group(origin.resolve(), settings)
    path = folder / f"{group}-{key[:20]}{SUFFIX}"
    remove_stale_temporaries(folder)
    try:
        found = _read_cache(path, key, shape, files)
    except DamagedCache as damage:
        warnings.warn(GankitWarning(f"the image cache {path} is damaged ({damage}); rebuilding it"), stacklevel=2)
        found = None
    if found is not None:
        return found
    try:
        with _claim(folder, path, len(files) * int(np.prod(shape))) as temp:
            decoded = _decode_all(files, decode, shape, temp, progress, workers)
            if not decoded.names:
                return decoded
            _append_trailer(temp, key, shape, len(decoded.names), decoded.skipped)
            os.replace(temp, path)
    except CacheUnwritable as error:
        warnings.warn(
            GankitWarning(f"cannot write the image cache in {folder} ({error}); decoding into memory"), stacklevel=2
        )
        return _decode_all(files, decode, shape, None, progress, workers)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the temporary file is removed; say so in one line
        name = signal_name(stop)
        raise Interrupted(f"{name} received while building the image cache: stopped, no partial cache left", name) from None
    _remove_stale(folder, group, keep=path)
    try:
        cached = _read_cache(path, key, shape, files)
    except DamagedCache:  # pragma: no cover - the file was just written; only a concurrent writer could break it
        cached = None
    if cached is None:  # pragma: no cover - as above
        return decoded
    cached.built = True
    return cached


class CacheUnwritable(Exception):
    """The cache folder cannot take the file (read-only, full disk): the images are decoded into memory instead."""


class DamagedCache(Exception):
    """A cache file exists but cannot be used (truncated, overwritten, checksum mismatch); the message says why."""


@contextmanager
def _claim(folder: Path, path: Path, size: int):
    """A locked temporary file for ``path`` with ``size`` bytes reserved on disk, removed unless renamed into place.

    Any OSError on the way (read-only folder, full disk) means the cache cannot be written: CacheUnwritable.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with cache_temporary(path) as (handle, temp):
            _reserve(handle, size)
            yield temp
    except OSError as error:
        raise CacheUnwritable(error.strerror or str(error)) from None


def _decode_all(files, decode, shape, temp: Optional[Path], progress, workers) -> DecodedImages:
    """Decode into ``temp`` (a file, truncated to the usable rows) or into memory."""
    total = len(files)
    row_bytes = int(np.prod(shape))
    if temp is not None and total:
        rows = np.memmap(temp, dtype=np.uint8, mode="w+", shape=(total, *shape))
    else:
        rows = np.empty((total, *shape), dtype=np.uint8)
    names: list[str] = []
    skipped: list[tuple[str, str]] = []

    def attempt(file: ImageFile):
        try:
            array = decode(file.path)
        except UnusableImage as reason:
            return str(reason)
        except Exception as error:  # a broken file can make a decoder raise nearly anything; never stop the run
            return _reason(error)
        if array.shape != shape or array.dtype != np.uint8:
            return f"decoded to {array.dtype}{tuple(array.shape)}, expected uint8{shape}"
        return array

    # Pillow releases the GIL while decoding and resizing, so threads decode on every core.
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as executor, warnings.catch_warnings():
        # A huge image is handled (decoded at reduced scale or skipped); Pillow's warning about it is noise.
        from PIL import Image

        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for start in range(0, total, _CHUNK):
            chunk = files[start : start + _CHUNK]
            for file, result in zip(chunk, executor.map(attempt, chunk)):
                if isinstance(result, str):
                    skipped.append((file.name, result))
                else:
                    rows[len(names)] = result
                    names.append(file.name)
            if progress is not None:
                progress(min(start + _CHUNK, total), total)
    count = len(names)
    if temp is not None and total:
        rows.flush()
        del rows
        os.truncate(temp, count * row_bytes)
        images = np.empty((0, *shape), dtype=np.uint8)  # the caller maps the finished file
    else:
        images = rows[:count] if count < total else rows
    return DecodedImages(images=images, names=names, skipped=skipped, cache_path=None, built=True)


def _reserve(handle: int, size: int) -> None:
    """Claim the disk space up front: a memory-mapped write to a full disk kills the process (SIGBUS)."""
    if size and hasattr(os, "posix_fallocate"):
        os.posix_fallocate(handle, 0, size)


def _reason(error: BaseException) -> str:
    if isinstance(error, PermissionError):
        return "unreadable (permission denied)"
    if isinstance(error, MemoryError):
        return "too large to decode"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]


def _append_trailer(path: Path, key: str, shape, count: int, skipped) -> None:
    trailer = json.dumps(
        {
            "format": FORMAT_VERSION, "key": key, "shape": list(shape), "count": count, "skipped": skipped,
            "block": CHECKSUM_BLOCK, "crc32": _block_checksums(path, count * int(np.prod(shape))),
        }
    ).encode("utf-8", "surrogateescape")
    with open(path, "ab") as handle:
        handle.write(trailer)
        handle.write(_TRAILER.pack(len(trailer), _MAGIC))
        handle.flush()
        os.fsync(handle.fileno())


def _block_checksums(path: Path, size: int) -> list[int]:
    """CRC-32 of each CHECKSUM_BLOCK bytes of the first ``size`` bytes of ``path`` (zlib's crc32 runs at GB/s)."""
    checksums = []
    buffer = bytearray(CHECKSUM_BLOCK)
    with open(path, "rb", buffering=0) as handle:
        remaining = size
        while remaining > 0:
            view = memoryview(buffer)[: min(CHECKSUM_BLOCK, remaining)]
            read = handle.readinto(view)
            if not read:
                break  # shorter than promised: the checksum list comes out short and does not match
            checksums.append(zlib.crc32(view[:read]))
            remaining -= read
    return checksums


def _read_cache(path: Path, key: str, shape, files: Sequence[ImageFile]) -> Optional[DecodedImages]:
    """The cached images, or ``None`` when there is no cache file; :class:`DamagedCache` when it cannot be used
    (truncated, damaged pixels, for other files)."""
    try:
        info = path.stat()
    except OSError:  # no such file, or the cache folder is not a folder: nothing cached here
        return None
    if not stat.S_ISREG(info.st_mode):  # opening a FIFO would hang
        raise DamagedCache("not a regular file")
    total_size = info.st_size
    try:
        header, length = _read_trailer(path, total_size)
        count = int(header["count"])
        skipped = [(str(name), str(reason)) for name, reason in header["skipped"]]
        if header.get("key") != key or tuple(header.get("shape", ())) != tuple(shape) or count <= 0:
            raise DamagedCache("written for other files or settings")
        pixels = count * int(np.prod(shape))
        if pixels + length + _TRAILER.size != total_size:
            raise DamagedCache("wrong size")
        if header.get("block") != CHECKSUM_BLOCK or [int(c) for c in header["crc32"]] != _block_checksums(path, pixels):
            raise DamagedCache("pixel checksum mismatch")
        skipped_names = {name for name, _ in skipped}
        names = [file.name for file in files if file.name not in skipped_names]
        if len(names) != count:
            raise DamagedCache("lists other files")
        # Copy-on-write: the array is writable in this process (torch wants that) and the file never changes.
        images = np.memmap(path, dtype=np.uint8, mode="c", shape=(count, *shape))
    except OSError as error:
        raise DamagedCache(f"unreadable: {error.strerror or error}") from None
    except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise DamagedCache(f"unreadable trailer: {type(error).__name__}") from None
    return DecodedImages(images=images, names=names, skipped=skipped, cache_path=path, built=False)


def _read_trailer(path: Path, total_size: int) -> tuple[dict, int]:
    with open(path, "rb") as handle:
        if total_size < _TRAILER.size:
            raise DamagedCache("truncated")
        handle.seek(total_size - _TRAILER.size)
        length, magic = _TRAILER.unpack(handle.read(_TRAILER.size))
        if magic != _MAGIC or length > total_size - _TRAILER.size:
            raise DamagedCache("truncated or not a gankit image cache")
        handle.seek(total_size - _TRAILER.size - length)
        header = json.loads(handle.read(length).decode("utf-8", "surrogateescape"))
    if not isinstance(header, dict):
        raise DamagedCache("unreadable trailer")
    return header, length


def _remove_stale(folder: Path, group: str, keep: Path) -> None:
    """Remove older cache files of the same folder and settings (the folder changed since they were built)."""
    for old in folder.glob(f"{group}-*{SUFFIX}"):
        if old != keep:
            try:
                old.unlink()
            except OSError:  # in use elsewhere (Windows) or already gone: harmless
                pass
