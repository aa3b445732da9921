"""The ``wgan`` architecture: the article's Keras WGAN networks (``DCGAN_D``, ``DCGAN_G``) in PyTorch.

At 96x96 with the default width 64 the networks are the article's layer for layer (shapes in docs/architectures.md):

    critic     3 x 96 -> 64 x 48 -> 128 x 24 -> 256 x 12 -> 512 x 6 -> 1024 x 3 -> Conv 3x3 -> 1 score
    generator  z -> ConvT 3x3 -> 1024 x 3 -> 512 x 6 -> 256 x 12 -> 128 x 24 -> 64 x 48 -> 3 x 96, tanh

Sizes ``3 * 2**k`` start from a 3x3 map as the article does; ``4 * 2**k`` (16, 32, 64, 128, 256) from 4x4, with
one stage per doubling. The critic returns raw scores: there is no sigmoid anywhere in it.
"""
from __future__ import annotations

import torch
from torch import nn

import gankit
from gankit.builtins import convnets

# Keras's BatchNormalization(epsilon=1.01e-5), as the article's networks use it.
BATCH_NORM_EPS = 1.01e-5
# Sizes 3 * 2**k (12 to 192; the article's 96) come down to a 3x3 map, 4 * 2**k (16 to 256) to 4x4.
BASES = (3, 4)


def plan(size: int) -> tuple[int, int]:
    return convnets.plan(size, bases=BASES, name="wgan")


class Critic(nn.Module):
    """``DCGAN_D``: zero-padded 4x4 stride-2 convs doubling the channels, then a base x base conv to one score."""

    def __init__(self, *, channels: int, size: int, width: int, norm: str) -> None:
        super().__init__()
        base, stages = plan(size)
        widths = [width * 2**i for i in range(stages)]
        # Keras's ZeroPadding2D() then a "valid" 4x4 stride-2 conv is padding=1 here: each halves the map.
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), convnets.norm_layer(norm, outer, batch_eps=BATCH_NORM_EPS), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, base, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(x.shape[0])  # Flatten() of the 1 x 1 x 1 map: one raw score


class Generator(nn.Module):
    """``DCGAN_G``: a base x base transposed conv from z, then 4x4 stride-2 transposed convs cropped by 1."""

    def __init__(self, *, channels: int, size: int, z_dim: int, width: int) -> None:
        super().__init__()
        base, stages = plan(size)
        self.z_dim = z_dim
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]
        # As in the article, no normalisation or activation follows this first layer. On the 1x1 noise map its
        # stride does not matter: the output is base x base either way.
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, widths[0], base, 1, 0, bias=False)]
        for inner, outer in zip(widths, widths[1:]):
            # Keras's "valid" 4x4 stride-2 transposed conv then Cropping2D(1) is padding=1 here: it doubles the map.
            layers += [
                nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False),
                nn.BatchNorm2d(outer, eps=BATCH_NORM_EPS),
                nn.ReLU(),
            ]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.z_dim, 1, 1))


def wgan(*, shape: tuple[int, ...], z_dim: int, width: int = 64, norm: str = "batch"):
    """Build the article's WGAN generator and critic for image ``shape`` (C, H, W) with H == W."""
    channels, size = convnets.check_image_options("wgan", shape, width=width, norm=norm)
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width)
    critic = Critic(channels=channels, size=size, width=width, norm=norm)
    generator.apply(convnets.init_weights)
    critic.apply(convnets.init_weights)
    return generator, critic


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "wgan",
        wgan,
        description="the article's Keras WGAN networks (DCGAN_D, DCGAN_G); options: width (64), norm (critic)",
    )
