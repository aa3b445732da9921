"""The ``resnet`` architecture: a small residual generator and discriminator in the style of SNGAN/WGAN-GP.

    generator      z (N, z_dim) -> linear -> 8w x 4 x 4 -> up-blocks (each doubles the size) -> C x S x S, tanh
    discriminator  C x S x S -> down-blocks (each halves the size) -> ReLU, sum over space -> linear -> (N,)

``w`` is the ``width`` option. The discriminator has no normalisation layer and no sigmoid: it returns raw
scores, so it works with every gankit loss and with gradient penalties (which batch norm would break).
"""
from __future__ import annotations

import torch
from torch import nn

from gankit.errors import GankitError

# size -> (starting map size, doubling stages)
PLANS = {32: (4, 3), 64: (4, 4), 96: (6, 4), 128: (4, 5)}
SUPPORTED_SIZES = tuple(PLANS)
# Channel multipliers stop growing here, so 128 px does not cost 32x the width at its coarsest stage.
MAX_MULTIPLIER = 8


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class UpBlock(nn.Module):
    """BN, ReLU, nearest 2x upsample, conv; BN, ReLU, conv; plus an upsampled 1x1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv3x3(in_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            _conv3x3(out_channels, out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DownBlock(nn.Module):
    """ReLU, conv, ReLU, conv, 2x average pool; plus a 1x1-conv, pooled shortcut.

    The first block of the discriminator sees the image itself, so it skips the leading ReLU (which would
    throw away every negative pixel).
    """

    def __init__(self, in_channels: int, out_channels: int, *, first: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [] if first else [nn.ReLU()]
        layers += [_conv3x3(in_channels, out_channels), nn.ReLU(), _conv3x3(out_channels, out_channels), nn.AvgPool2d(2)]
        self.residual = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Generator(nn.Module):
    def __init__(self, *, channels: int, size: int, z_dim: int, width: int) -> None:
        super().__init__()
        base, stages = PLANS[size]
        # Coarse to fine: 8w ... w channels (capped), one more entry than there are up-blocks.
        widths = [width * min(2 ** (stages - i), MAX_MULTIPLIER) for i in range(stages + 1)]
        self.base = base
        self.start_channels = widths[0]
        self.project = nn.Linear(z_dim, widths[0] * base * base)
        self.blocks = nn.Sequential(*(UpBlock(inner, outer) for inner, outer in zip(widths, widths[1:])))
        self.to_image = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), _conv3x3(widths[-1], channels), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z.reshape(z.shape[0], -1)).view(z.shape[0], self.start_channels, self.base, self.base)
        return self.to_image(self.blocks(x))


class Discriminator(nn.Module):
    def __init__(self, *, channels: int, size: int, width: int) -> None:
        super().__init__()
        _, stages = PLANS[size]
        # Fine to coarse: w ... 8w channels (capped), one per down-block.
        widths = [width * min(2**i, MAX_MULTIPLIER) for i in range(stages)]
        blocks = [DownBlock(channels, widths[0], first=True)]
        blocks += [DownBlock(inner, outer) for inner, outer in zip(widths, widths[1:])]
        self.blocks = nn.Sequential(*blocks)
        self.activation = nn.ReLU()
        self.score = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.activation(self.blocks(x)).sum(dim=(2, 3))
        return self.score(features).reshape(x.shape[0])


def resnet(*, shape: tuple[int, ...], z_dim: int, width: int = 16):
    """Build the ResNet generator and discriminator for images of ``shape`` (C, S, S), S in 32, 64, 96, 128."""
    sizes = ", ".join(map(str, SUPPORTED_SIZES))
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GankitError(f"resnet needs square images (channels, size, size), got data of shape {tuple(shape)}")
    if shape[1] not in PLANS:
        raise GankitError(f"resnet supports square images of {sizes} pixels, got {shape[1]}x{shape[2]}")
    if width <= 0:
        raise GankitError(f"resnet option width must be positive, got {width}")
    channels, size = shape[0], shape[1]
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width)
    discriminator = Discriminator(channels=channels, size=size, width=width)
    return generator, discriminator
