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
WALK_SUFFIXES = (".gif", ".png")


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


def check_sample_output(path: Path, *, overwrite: bool, walk: bool = False) -> None:
    """Refuse an output file gankit sample cannot or must not write, before the checkpoint is even read
    (``walk``: the output of ``--interpolate``); for .npy also the labels file written beside it."""
    _check_sample_path(path, overwrite=overwrite, walk=walk)
    if path.suffix.lower() == ".npy":
        _check_sample_path(labels_path(path), overwrite=overwrite, walk=walk, what="the labels file")


def labels_path(path: Path) -> Path:
    """Where the class labels of samples written to ``path`` (.npy) go: ``<stem>.labels.npy`` beside it."""
    return path.with_name(f"{path.stem}.labels.npy")


def _check_sample_path(path: Path, *, overwrite: bool, walk: bool, what: str = "--out") -> None:
    shown = shortened(path)
    try:
        _check_output_path(path, shown, overwrite=overwrite, walk=walk, what=what)
    except OSError as error:  # e.g. a file name too long to look up
        raise GankitError(f"cannot write {what} {shown}: {error.strerror or error}") from None


def _check_output_path(path: Path, shown: str, *, overwrite: bool, walk: bool, what: str) -> None:
    if os.path.isdir(path):  # False, not an error, for a name the OS cannot even look up
        hint = "give a file name ending in .png or .npy" if what == "--out" else "move it, or choose another --out"
        raise GankitError(f"{what} {shown} is a folder; {hint}")
    suffix = path.suffix.lower()
    if walk and suffix not in WALK_SUFFIXES:
        raise GankitError(f"--out of --interpolate must end in .gif (an animation) or .png (a strip), got {quoted(path.name)}")
    if not walk and suffix not in SAMPLE_SUFFIXES:
        gif = "; .gif is for --interpolate" if suffix == ".gif" else ""
        raise GankitError(f"--out must end in .png (a picture) or .npy (raw samples){gif}, got {quoted(path.name)}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise GankitError(f"{what} {shown} already exists; pass --overwrite to replace it, or choose another --out")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise GankitError(f"cannot write {what} {shown}: {shortened(folder)} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise GankitError(f"cannot write {what} {shown}: the folder {shortened(folder)} is not writable")


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


def write_samples(samples: torch.Tensor, path: Path, *, title: str, labels: torch.Tensor | None = None,
                  per_row: int | None = None) -> Path:
    """Write samples to ``path`` (.png or .npy) atomically: a kill at any moment leaves the old file or the
    new one, never a partial one. ``per_row`` images make one row of a grid (nearly square by default);
    ``labels`` (of a conditional generator) go to :func:`labels_path` beside a .npy, written first so that
    new samples never sit beside old labels."""
    suffix = path.suffix.lower()
    if labels is not None and suffix == ".npy":
        write_output(labels_path(path), _npy_bytes(labels.to(torch.int64)), what="the labels file")
    return write_output(path, _encode(samples, suffix, title=title, per_row=per_row))


def write_output(path: Path, content: bytes, *, what: str = "--out") -> Path:
    """Write a finished output of gankit sample atomically, first removing what a killed earlier write of it left."""
    from gankit.checkpoint import remove_stale_writes, write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_writes(path)  # what a killed earlier write of this file left behind
        return write_atomic(path, content)
    except OSError as error:
        raise GankitError(f"cannot write {what} {shortened(path)}: {error.strerror or error}") from None


def _npy_bytes(tensor: torch.Tensor) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, tensor.numpy())
    return buffer.getvalue()


def _encode(samples: torch.Tensor, suffix: str, *, title: str, per_row: int | None = None) -> bytes:
    if suffix == ".npy":
        return _npy_bytes(samples)
    buffer = io.BytesIO()
    if samples.dim() == 4:
        _render_grid(samples, buffer, nrow=per_row, format="PNG")
    else:
        from gankit.plots import scatter_image

        scatter_image(samples.numpy(), title=title).save(buffer, format="PNG")
    return buffer.getvalue()


def grid_image(images: torch.Tensor, *, per_row: int | None = None):
    """Images in [-1, 1] ``(N, C, H, W)`` as one grid, a Pillow RGB image with the pixels :func:`save_grid` writes."""
    from PIL import Image
    from torchvision.utils import make_grid

    per_row = per_row or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(images.detach().float().cpu(), nrow=per_row, normalize=True, value_range=(-1, 1), padding=2)
    # As torchvision's save_image rounds to 8 bits.
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    return Image.fromarray(pixels)


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (the folders between are created when writing)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
