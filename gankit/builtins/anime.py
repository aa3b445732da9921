"""The ``anime`` data source: the article's layout, a folder of numbered face images (``faces/N.jpg``)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import gankit
from gankit.components import DataSource
from gankit.errors import GankitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _natural_key(path: Path):
    # 2.jpg before 10.jpg, as the article's files are numbered.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class AnimeFaces(DataSource):
    """RGB face images from ``root`` (default ``faces``), resized to ``image_size`` (default 96)."""

    def __init__(self, *, root: str | None = None, image_size: int | None = None, seed: int = 0, limit: int = 0):
        folder = Path(root if root is not None else "faces")
        if not folder.is_dir():
            problem = "is not a folder" if folder.exists() else "not found"
            raise GankitError(
                f"anime data folder {str(folder)!r} {problem}; point --data-root at the folder of face images "
                "(e.g. --data-root path/to/faces)"
            )
        files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if limit > 0:
            files = files[:limit]
        if not files:
            raise GankitError(f"anime data folder {str(folder)!r} holds no .jpg or .png images")
        self.files = files
        self.size = image_size or 96
        self.shape = (3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            image = image.convert("RGB")
            if image.size != (self.size, self.size):
                image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()
        # Scale to [-1, 1] (the article's ``x - 127.5/127.5`` missed the parentheses).
        return torch.from_numpy(array).float() / 127.5 - 1.0


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "anime",
        AnimeFaces,
        description="The article's anime faces: a folder of N.jpg images (--data-root), 3x96x96",
    )
