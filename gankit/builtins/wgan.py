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
from gankit.errors import GankitError

NORMS = ("batch", "layer", "instance", "none")
# Keras's BatchNormalization(epsilon=1.01e-5), as the article's networks use it.
BATCH_NORM_EPS = 1.01e-5


def supported_sizes(limit: int = 256) -> list[int]:
    return sorted(s for s in (base * 2**stages for base in (3, 4) for stages in range(2, 7)) if s <= limit)


def plan(size: int) -> tuple[int, int]:
    """``(base, stages)`` with ``size == base * 2**stages``: the smallest feature map and the stride-2 layers."""
    for base in (3, 4):
        stages, value = 0, size
        while value % 2 == 0 and value > base:
            value //= 2
            stages += 1
        if value == base and stages >= 2:
            return base, stages
    raise GankitError(
        f"wgan supports square images of {', '.join(map(str, supported_sizes()))} pixels, got {size}x{size}"
    )


def keras_init(module: nn.Module) -> None:
    """The article's initialisers: conv weights N(0, 0.02), normalisation scales N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def critic_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=BATCH_NORM_EPS)
    if kind == "layer":  # over (C, H, W) of each example: safe with a gradient penalty
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class Critic(nn.Module):
    """``DCGAN_D``: zero-padded 4x4 stride-2 convs doubling the channels, then a base x base conv to one score."""

    def __init__(self, *, channels: int, size: int, width: int, norm: str) -> None:
        super().__init__()
        base, stages = plan(size)
        widths = [width * 2**i for i in range(stages)]
        # Keras's ZeroPadding2D() then a "valid" 4x4 stride-2 conv is padding=1 here: each halves the map.
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), critic_norm(norm, outer), nn.LeakyReLU(0.2)]
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
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GankitError(f"wgan needs square images (channels, size, size), got data of shape {tuple(shape)}")
    if width <= 0:
        raise GankitError(f"wgan option width must be positive, got {width}")
    if norm not in NORMS:
        raise GankitError(f"wgan option norm must be one of {', '.join(NORMS)}, got {norm!r}")
    channels, size = shape[0], shape[1]
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width)
    critic = Critic(channels=channels, size=size, width=width, norm=norm)
    generator.apply(keras_init)
    critic.apply(keras_init)
    return generator, critic


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "wgan",
        wgan,
        description="the article's Keras WGAN networks (DCGAN_D, DCGAN_G); options: width (64), norm (critic)",
    )
