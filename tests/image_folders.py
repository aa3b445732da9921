"""Helpers for the image data tests: small image files, and a fingerprint of a folder to prove it unchanged."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(24, 20), color=(200, 30, 30), mode="RGB", **save) -> Path:
    """A solid image file, format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **save)
    return path


def write_noise(path: Path, size=(48, 40), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def fingerprint(folder: Path) -> dict:
    """Every entry under ``folder`` (links not followed): type, mode, size, mtime and content hash."""
    result = {}
    for directory, folders, files in os.walk(folder):
        for name in sorted(folders + files):
            path = Path(directory) / name
            info = path.lstat()
            entry = [info.st_mode, info.st_size, info.st_mtime_ns]
            if path.is_symlink():
                entry.append(os.readlink(path))
            elif path.is_file():
                try:
                    entry.append(hashlib.sha256(path.read_bytes()).hexdigest())
                except PermissionError:
                    entry.append("unreadable")
            result[str(path.relative_to(folder))] = entry
    return result
