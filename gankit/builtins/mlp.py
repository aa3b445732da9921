"""The ``mlp`` architecture for vector data, e.g. the 2-D benchmarks: fully connected ReLU networks."""
from __future__ import annotations

import math

import torch
from torch import nn

import gankit
from gankit.builtins.packing import PackedDiscriminator
from gankit.errors import GankitError


def _stack(inputs: int, width: int, depth: int, outputs: int, activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = inputs
    for _ in range(depth):
        layers += [nn.Linear(size, width), activation()]
        size = width
    layers.append(nn.Linear(size, outputs))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z -> ``depth`` hidden ReLU layers -> data; linear output (vector data need not lie in [-1, 1])."""

    def __init__(self, *, shape: tuple[int, ...], z_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.net = _stack(z_dim, width, depth, math.prod(shape), nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """data -> ``depth`` hidden LeakyReLU layers -> one raw score."""

    def __init__(self, *, features: int, width: int, depth: int) -> None:
        super().__init__()
        self.net = _stack(features, width, depth, 1, lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape[0])


def mlp(*, shape: tuple[int, ...], z_dim: int, width: int = 400, depth: int = 3, pack: int = 1,
        g_width: int | None = None, d_width: int | None = None):
    """Generator and discriminator of ``depth`` hidden layers of ``width`` units; ``pack`` > 1 is PacGAN.

    ``g_width`` / ``d_width`` give one network its own width (e.g. a generator wider than its discriminator).
    """
    if len(shape) != 1:
        raise GankitError(f"mlp is for vector data of shape (features,), got data of shape {tuple(shape)}")
    g_width = width if g_width is None else g_width
    d_width = width if d_width is None else d_width
    for name, value in (("width", width), ("depth", depth), ("pack", pack), ("g_width", g_width),
                        ("d_width", d_width)):
        if value <= 0:
            raise GankitError(f"mlp option {name} must be positive, got {value}")
    generator = MLPGenerator(shape=shape, z_dim=z_dim, width=g_width, depth=depth)
    discriminator: nn.Module = MLPDiscriminator(features=pack * shape[0], width=d_width, depth=depth)
    if pack > 1:
        discriminator = PackedDiscriminator(discriminator, pack)
    return generator, discriminator


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "mlp",
        mlp,
        description="Fully connected networks for vector data (e.g. ring, grid); options: width, depth, pack, "
        "g_width, d_width",
    )
