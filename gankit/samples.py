"""Writing generated samples: PNG grids for images; for ``gankit sample``, also .npy arrays and scatter plots
of 2-D data, written atomically so that an existing file is never left half-replaced."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch

from gankit.errors import GankitError, quoted, shortened

SAMPLE_SUFFIXES = (".png", ".npy")


def save_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None) -> Path:
    """Save images in [-1, 1] of shape (N, C, H, W) as one PNG grid (nearly square by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _render_grid(images, str(path), nrow=nrow)
    return path


def _render_grid(images: torch.Tensor, target, *, nrow: int | None, **save_options) -> None:
    from torchvision.utils import save_image

    if images.dim() != 4:
        raise ValueError(f"save_grid needs (N, C, H, W) images, got shape {tuple(images.shape)}")
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    save_image(images.detach().float().cpu(), target, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2,
               **save_options)


def check_sample_output(path: Path, *, overwrite: bool) -> None:
    """Refuse an output file gankit sample cannot or must not write, before the checkpoint is even read."""
    shown = shortened(path)
    try:
        _check_output_path(path, shown, overwrite=overwrite)
    except OSError as error:  # e.g. a file name too long to look up
        raise GankitError(f"cannot write --out {shown}: {error.strerror or error}") from None


def _check_output_path(path: Path, shown: str, *, overwrite: bool) -> None:
    if os.path.isdir(path):  # False, not an error, for a name the OS cannot even look up
        raise GankitError(f"--out {shown} is a folder; give a file name ending in .png or .npy")
    if path.suffix.lower() not in SAMPLE_SUFFIXES:
        raise GankitError(f"--out must end in .png (a picture) or .npy (raw samples), got {quoted(path.name)}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise GankitError(f"--out {shown} already exists; pass --overwrite to replace it, or choose another --out")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise GankitError(f"cannot write --out {shown}: {shortened(folder)} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GankitError(f"cannot write --out {shown}: the folder {shortened(folder)} is not writable")


def check_picture(path: Path, shape) -> None:
    """A .png needs images (C, H, W) or 2-D points; other data can only go to .npy."""
    if path.suffix.lower() == ".png" and not (len(shape) == 3 or tuple(shape) == (2,)):
        raise GankitError(
            f"the checkpoint generates data of shape {tuple(shape)}, which has no picture; use --out FILE.npy"
        )


def sample_output_bytes(shape, suffix: str) -> int:
    """Memory one sample takes while it is encoded for ``suffix``, beyond the sample itself: the PNG grid
    (three float32 channels with padding, made twice on its way to 8 bits), the .npy copy, the scatter's
    float64 points."""
    if suffix.lower() == ".npy":
        return 4 * math.prod(shape)
    if len(shape) == 3:
        return 2 * 4 * 3 * (shape[1] + 2) * (shape[2] + 2)
    return 8 * math.prod(shape)


def write_samples(samples: torch.Tensor, path: Path, *, title: str) -> Path:
    """Write samples to ``path`` (.png or .npy) atomically: a kill at any moment leaves the old file or the
    new one, never a partial one."""
    from gankit.checkpoint import remove_stale_writes, write_atomic

    content = _encode(samples, path.suffix.lower(), title=title)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_writes(path)  # what a killed earlier write of this file left behind
        return write_atomic(path, content)
    except OSError as error:
        raise GankitError(f"cannot write --out {shortened(path)}: {error.strerror or error}") from None


def _encode(samples: torch.Tensor, suffix: str, *, title: str) -> bytes:
    buffer = io.BytesIO()
    if suffix == ".npy":
        import numpy as np

        np.save(buffer, samples.numpy())
    elif samples.dim() == 4:
        _render_grid(samples, buffer, nrow=None, format="PNG")
    else:
        from gankit.plots import scatter_image

        scatter_image(samples.numpy(), title=title).save(buffer, format="PNG")
    return buffer.getvalue()


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (the folders between are created when writing)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
