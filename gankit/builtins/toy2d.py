"""The 2-D benchmark data sources ``ring`` and ``grid`` of the PacGAN protocol (Lin et al. 2018).

ring: 8 Gaussians at (cos 2 pi i/8, sin 2 pi i/8), std 0.01. grid: 25 Gaussians at {-4,-2,0,2,4}^2, std 0.05.
Both recommend the documented 2-D recipe (``mlp``, R1, a decaying learning rate, generator EMA).
"""
from __future__ import annotations

import math

import torch

import gankit
from gankit.components import DataSource
from gankit.errors import GankitError

DEFAULT_COUNT = 100_000

# The 2-D recipes, chosen from searches on this 2-core CPU (docs/benchmarks.md has the measured table, the
# search and the shortfalls). Shared: a 2-D latent (higher ones left more samples between the modes), one
# discriminator step, Adam with beta1 = 0 (it roughly halved the samples off the modes against 0.5), a large
# learning rate decayed linearly to almost 0 over the end of the run (it sharpens the modes), lazy R1 with a
# small gamma (Mescheder et al. 2018; gamma 1 blurred the modes, none lost them, 0.1 tied 0.03 on the grid)
# and the generator EMA.
TOY_RECIPE = {
    "arch": "mlp:mlp:width=64,depth=3",  # plugin-qualified, as the defaults of RunConfig
    "loss": "losses:bce",
    "reg": ["regularizers:r1:gamma=0.03,every=4"],
    "optimizer": "adam",
    "lr": 3e-3,
    "betas": [0.0, 0.99],
    "d_steps": 1,
    "batch_size": 256,
    "steps": 4000,
    "lr_decay": 0.3,
    "z_dim": 2,
    "ema": 0.999,
    "sample_every": 500,
    "checkpoint_every": 2000,
    "log_every": 100,
    "metric": "metrics:modes",  # what --eval-every N measures unless --metric says otherwise
}
# The ring: least squares left fewer samples between its close modes than BCE. (The LSGAN loss carries a
# factor 0.5, so its R1 gamma is half of BCE's for the same balance.) PacGAN packing no longer helped here.
RING_RECIPE = {**TOY_RECIPE, "loss": "losses:least-squares", "reg": ["regularizers:r1:gamma=0.015,every=4"]}
# The grid: 25 modes need a wider generator and a longer run, half of it with a decaying rate.
GRID_RECIPE = {**TOY_RECIPE, "arch": "mlp:mlp:width=64,depth=3,g_width=128", "steps": 6000, "lr_decay": 0.5}


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
    Labelled: each point's class is the index of the mode it was drawn from (``mode_index``).
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
        self.num_classes = len(modes)
        self.class_names = tuple(f"mode {index}" for index in range(len(modes)))
        generator = torch.Generator().manual_seed(dataset_seed)
        which = torch.randint(len(modes), (count,), generator=generator)
        self.points = modes[which] + mode_std * torch.randn(count, 2, generator=generator)
        self.mode_index = which

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int):
        return self.points[index], int(self.mode_index[index])

    def tensor(self):
        return self.points

    def labels(self):
        return self.mode_index


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
