"""The 2-D benchmark data sources ``ring`` and ``grid`` of the PacGAN protocol (Lin et al. 2018).

ring: 8 Gaussians at (cos 2 pi i/8, sin 2 pi i/8), std 0.01. grid: 25 Gaussians at {-4,-2,0,2,4}^2, std 0.05.
Both recommend the documented 2-D recipe (``mlp`` with PacGAN packing, BCE, generator EMA).
"""
from __future__ import annotations

import math

import torch

import gankit
from gankit.components import DataSource
from gankit.errors import GankitError

DEFAULT_COUNT = 100_000

# The 2-D recipes, chosen from short searches on a shared 2-core CPU (docs/benchmarks.md has the measured
# table and its shortfalls): BCE with Adam 1e-3, a 3 x 128 MLP, batches of 256, two discriminator steps per
# generator step (sharper modes), R1 with a small gamma (Mescheder et al. 2018: it keeps the modes that the
# extra D steps otherwise cost, and flattens the ring's mode histogram), and the generator EMA.
TOY_RECIPE = {
    "arch": "mlp:width=128,depth=3,pack=2",
    "loss": "bce",
    "reg": ["r1:gamma=0.1"],
    "optimizer": "adam",
    "lr": 1e-3,
    "betas": [0.5, 0.999],
    "d_steps": 2,
    "batch_size": 256,
    "steps": 3000,
    "z_dim": 16,
    "ema": 0.999,
    "sample_every": 250,
    "checkpoint_every": 1000,
    "log_every": 50,
    "metric": "modes",  # what --eval-every N measures unless --metric says otherwise
}
# The ring keeps PacGAN2 (the pairs guard its 8 modes); on the grid, with R1 and 2 D steps, the unpacked
# discriminator kept more modes (24 vs 20 of 25 at 2,000 steps, one seed) and sharper ones.
RING_RECIPE = TOY_RECIPE
GRID_RECIPE = {**TOY_RECIPE, "arch": "mlp:width=128,depth=3,pack=1"}


def ring_modes(count: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    return (radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)).float()


def grid_modes(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    offsets = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(offsets, offsets)


class GaussianMixture2D(DataSource):
    """``count`` points from an equal-weight mixture of isotropic Gaussians at ``modes`` with std ``mode_std``.

    The points are raw coordinates (not rescaled to [-1, 1]: the ``mlp`` generator has a linear output) and
    depend only on ``dataset_seed``. ``modes`` and ``mode_std`` are what the ``modes`` metric scores against.
    """

    shape = (2,)

    def __init__(self, modes: torch.Tensor, mode_std: float, *, count: int, dataset_seed: int,
                 recipe: dict) -> None:
        if count <= 0:
            raise GankitError(f"count must be positive, got {count}")
        if dataset_seed < 0:
            raise GankitError(f"dataset_seed must be non-negative, got {dataset_seed}")
        self.recommended = recipe
        self.modes = modes
        self.mode_std = float(mode_std)
        generator = torch.Generator().manual_seed(dataset_seed)
        which = torch.randint(len(modes), (count,), generator=generator)
        self.points = modes[which] + mode_std * torch.randn(count, 2, generator=generator)
        self.labels = which

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int):
        return self.points[index]

    def tensor(self):
        return self.points


def ring(*, root=None, image_size=None, seed: int = 0, count: int = DEFAULT_COUNT, dataset_seed: int = 0):
    """8 Gaussians on the unit circle, std 0.01 (PacGAN's 2D-ring)."""
    return GaussianMixture2D(ring_modes(), 0.01, count=count, dataset_seed=dataset_seed, recipe=RING_RECIPE)


def grid(*, root=None, image_size=None, seed: int = 0, count: int = DEFAULT_COUNT, dataset_seed: int = 0):
    """25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (PacGAN's 2D-grid)."""
    return GaussianMixture2D(grid_modes(), 0.05, count=count, dataset_seed=dataset_seed, recipe=GRID_RECIPE)


@gankit.hookimpl
def gankit_register_data_sources(register):
    register("ring", ring, description="8 Gaussians on a circle, std 0.01 (PacGAN 2D-ring); shape (2,)")
    register("grid", grid, description="25 Gaussians on a 5x5 grid, std 0.05 (PacGAN 2D-grid); shape (2,)")
