"""Latent walks (``gankit sample --interpolate K``): spherical interpolation between noise vectors, drawn as an
animated GIF or a PNG strip of frames."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from gankit.errors import GankitError, shortened

DEFAULT_FRAMES = 8
GIF_FRAME_MS = 100


def slerp(start: torch.Tensor, end: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``start`` to ``end`` at ``fractions`` in [0, 1] (Shoemake's slerp). Gaussian
    noise lives near a sphere; a straight line between two noise vectors cuts through its inside, where the
    generator has seen no noise (White 2016, "Sampling generative networks")."""
    start64, end64 = start.double(), end.double()
    cosine = torch.dot(start64, end64) / (start64.norm() * end64.norm()).clamp_min(1e-12)
    angle = torch.arccos(cosine.clamp(-1.0, 1.0))
    fractions = fractions.double()[:, None]
    if float(torch.sin(angle)) < 1e-6:  # (anti)parallel vectors: every great circle fits; the line is as good
        points = (1 - fractions) * start64 + fractions * end64
    else:
        points = (torch.sin((1 - fractions) * angle) * start64 + torch.sin(fractions * angle) * end64) / torch.sin(angle)
    return points.to(start.dtype)


def walk_noise(keys: torch.Tensor, frames: int) -> torch.Tensor:
    """The noise of a walk through ``keys`` (K, z_dim): ``frames`` frames from each key to the next (the key
    itself first), then the last key: ``(K - 1) * frames + 1`` vectors. The keys appear unchanged."""
    fractions = torch.arange(frames, dtype=torch.float64) / frames
    steps = []
    for start, end in zip(keys[:-1], keys[1:]):
        segment = slerp(start, end, fractions)
        segment[0] = start  # exactly the key, not its rounding through the formula
        steps.append(segment)
    return torch.cat([*steps, keys[-1:]])


def frame_count(keys: int, frames: int) -> int:
    return (keys - 1) * frames + 1


def check_walk(keys: int, frames: int) -> None:
    if keys < 2:
        raise GankitError(f"--interpolate needs at least 2 noise vectors to walk between, got {shortened(keys)}")
    if frames < 1:
        raise GankitError(f"--frames must be at least 1, got {shortened(frames)}")


def check_walk_shape(shape) -> None:
    """A walk is drawn as pictures: images only."""
    if len(shape) != 3:
        raise GankitError(
            f"--interpolate draws images, the checkpoint generates data of shape {tuple(shape)}; "
            "sample it without --interpolate (.png scatter for 2-D points, or .npy)"
        )


def draw_walk(generator, metadata: dict, keys: int, frames: int, *, seed: int, device,
              classes: list[int] | None = None) -> torch.Tensor:
    """A walk through ``keys`` noise vectors (those of ``gankit sample -n keys --seed seed``) as images
    ``(rows, frames, C, H, W)``: one row, or one row per class of a conditional generator, all rows walking
    the same noise."""
    from gankit.inference import check_memory, generate, sample_bytes, sample_noise
    from gankit.samples import sample_output_bytes

    check_walk(keys, frames)
    check_walk_shape(metadata["shape"])
    z_dim = int(metadata["z_dim"])
    rows = 1 if classes is None else len(classes)
    total = frame_count(keys, frames)
    per_frame = sample_bytes(metadata["shape"], z_dim) + 2 * sample_output_bytes(metadata["shape"], ".png")
    check_memory(rows * total, per_frame, "walk frames", flag="--interpolate or --frames")
    noise = walk_noise(sample_noise(keys, z_dim, seed=seed), frames)
    if classes is None:
        images = generate(generator, noise, device=device)
    else:
        labels = torch.tensor(classes, dtype=torch.int64).repeat_interleave(total)
        images = generate(generator, noise.repeat(rows, 1), labels, device=device)
    return images.reshape(rows, total, *images.shape[1:])


def encode_walk(walk: torch.Tensor, suffix: str) -> bytes:
    """A walk ``(rows, frames, C, H, W)`` as an animated GIF that loops (each frame a grid of the rows), or a
    PNG strip (one row of frames per walk)."""
    from gankit.samples import grid_image

    rows, frames = walk.shape[:2]
    buffer = io.BytesIO()
    if suffix == ".png":
        grid_image(walk.reshape(rows * frames, *walk.shape[2:]), per_row=frames).save(buffer, format="PNG")
    else:
        pictures = [grid_image(walk[:, index]) for index in range(frames)]
        pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS,
                         loop=0)
    return buffer.getvalue()


def write_walk(walk: torch.Tensor, path: Path) -> Path:
    from gankit.samples import write_output

    return write_output(path, encode_walk(walk, path.suffix.lower()))
