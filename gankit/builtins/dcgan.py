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
from gankit.builtins import convnets

# Sizes 6 * 2**k (24 to 192; the article's 96) start from a 6x6 map, 4 * 2**k (16 to 256) from 4x4.
BASES = (6, 4)


def plan(size: int) -> tuple[int, int]:
    return convnets.plan(size, bases=BASES, name="dcgan")


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
            layers += [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), convnets.norm_layer(norm, outer), nn.LeakyReLU(0.2, True)]
        # The article's last layer at 96x96 is a 5x5 conv with stride 2 on the 6x6 map; on 4x4 a 4x4 conv.
        final_kernel, final_stride = (5, 2) if base == 6 else (4, 1)
        layers.append(nn.Conv2d(widths[-1], 1, final_kernel, final_stride, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(x.shape[0])


def dcgan(*, shape: tuple[int, ...], z_dim: int, width: int = 64, norm: str = "batch"):
    """Build the DCGAN generator and discriminator for image ``shape`` (C, H, W) with H == W."""
    channels, size = convnets.check_image_options("dcgan", shape, width=width, norm=norm)
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width)
    discriminator = Discriminator(channels=channels, size=size, width=width, norm=norm)
    generator.apply(convnets.init_weights)
    discriminator.apply(convnets.init_weights)
    return generator, discriminator


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "dcgan",
        dcgan,
        description="DCGAN (Radford et al. 2016), the article's networks; options: width, norm",
    )
