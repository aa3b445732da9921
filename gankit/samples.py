"""Writing generated samples: PNG grids for images."""
from __future__ import annotations

import math
from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] of shape (N, C, H, W) as one PNG grid (nearly square by default)."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if images.dim() != 4:
        raise ValueError(f"save_grid needs (N, C, H, W) images, got shape {tuple(images.shape)}")
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    save_image(images.detach().float().cpu(), str(path), nrow=nrow, normalize=True, value_range=(-1, 1), padding=2)
    return path
