"""The ``dcgan`` architecture: the DCGAN networks of Radford et al. as the anime-faces article builds them.

At 96x96 the networks are the article's layer for layer:

    generator      z (N, z_dim, 1, 1) -> ConvT 6x6 -> 512 x 6 x 6 -> 256 x 12 -> 128 x 24 -> 64 x 48 -> C x 96, tanh
    discriminator  C x 96 -> 64 x 48 (no norm) -> 128 x 24 -> 256 x 12 -> 512 x 6 -> Conv 5x5 stride 2 -> 1 score

Other sizes add or remove a doubling stage: 32 and 64 and 128 start from 4x4. The discriminator returns raw
scores (no sigmoid): the loss owns the link function.
"""
from __future__ import annotations

import torch
from torch import nn

import gankit
from gankit.errors import GankitError

NORMS = ("batch", "layer", "instance", "none")


def supported_sizes(limit: int = 256) -> list[int]:
    sizes = {base * 2**stages for base in (4, 6) for stages in range(2, 7)}
    return sorted(s for s in sizes if s <= limit)


def plan(size: int) -> tuple[int, int]:
    """``(base, stages)`` with ``size == base * 2**stages``: the starting map size and the doubling stages."""
    for base in (6, 4):
        stages = 0
        value = size
        while value % 2 == 0 and value > base:
            value //= 2
            stages += 1
        if value == base and stages >= 2:
            return base, stages
    raise GankitError(
        f"dcgan supports square images of {', '.join(map(str, supported_sizes()))} pixels, got {size}x{size}"
    )


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02); norm scales N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # normalises over (C, H, W) of each sample: safe with a gradient penalty
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class Generator(nn.Module):
    def __init__(self, *, channels: int, size: int, z_dim: int, width: int) -> None:
        super().__init__()
        base, stages = plan(size)
        self.z_dim = z_dim
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]
        # The article's first layer: a transposed conv from the 1x1 noise map to base x base.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, widths[0], base, 1 if base == 4 else 2, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.z_dim, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, *, channels: int, size: int, width: int, norm: str) -> None:
        super().__init__()
        base, stages = plan(size)
        widths = [width * 2**i for i in range(stages)]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), _norm(norm, outer), nn.LeakyReLU(0.2, True)]
        # The article's last layer at 96x96 is a 5x5 conv with stride 2 on the 6x6 map; on 4x4 a 4x4 conv.
        final_kernel, final_stride = (5, 2) if base == 6 else (4, 1)
        layers.append(nn.Conv2d(widths[-1], 1, final_kernel, final_stride, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(x.shape[0])


def dcgan(*, shape: tuple[int, ...], z_dim: int, width: int = 64, norm: str = "batch"):
    """Build the DCGAN generator and discriminator for image ``shape`` (C, H, W) with H == W."""
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GankitError(f"dcgan needs square images (channels, size, size), got data of shape {tuple(shape)}")
    if width <= 0:
        raise GankitError(f"dcgan option width must be positive, got {width}")
    if norm not in NORMS:
        raise GankitError(f"dcgan option norm must be one of {', '.join(NORMS)}, got {norm!r}")
    channels, size = shape[0], shape[1]
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width)
    discriminator = Discriminator(channels=channels, size=size, width=width, norm=norm)
    generator.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return generator, discriminator


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "dcgan",
        dcgan,
        description="DCGAN (Radford et al. 2016), the article's networks; options: width, norm",
    )
