"""Shared pieces of the square-image convolutional architectures (``dcgan``, ``wgan``): the size plan, the
normalization choices, the N(0, 0.02) initialisation and the factory's option checks."""
from __future__ import annotations

from torch import nn

from gankit.errors import GankitError

NORMS = ("batch", "layer", "instance", "none")


def supported_sizes(bases: tuple[int, ...], limit: int = 256) -> list[int]:
    """Every ``base * 2**stages`` with 2 to 6 doubling stages, up to ``limit`` pixels."""
    return sorted(s for s in {base * 2**stages for base in bases for stages in range(2, 7)} if s <= limit)


def plan(size: int, *, bases: tuple[int, ...], name: str) -> tuple[int, int]:
    """``(base, stages)`` with ``size == base * 2**stages``, trying ``bases`` in order: the smallest feature map
    and the number of stride-2 layers. Only the sizes of :func:`supported_sizes` (a 512 would need seven stages
    and 16 times the parameters of 256: refused, as the message says)."""
    for base in bases if size in supported_sizes(bases) else ():
        stages, value = 0, size
        while value % 2 == 0 and value > base:
            value //= 2
            stages += 1
        if value == base and stages >= 2:
            return base, stages
    raise GankitError(
        f"{name} supports square images of {', '.join(map(str, supported_sizes(bases)))} pixels, got {size}x{size}"
    )


def norm_layer(kind: str, channels: int, *, batch_eps: float = 1e-5) -> nn.Module:
    """One of :data:`NORMS` for ``channels`` feature maps; ``layer`` normalises over (C, H, W) of each example,
    which keeps a gradient penalty per-example."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=batch_eps)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def init_weights(module: nn.Module) -> None:
    """DCGAN's (and the article's Keras) initialisation: conv, linear and embedding weights N(0, 0.02), biases 0,
    normalization scales N(1, 0.02), shifts 0. Use with ``network.apply(init_weights)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def check_image_options(name: str, shape: tuple[int, ...], *, width: int, norm: str) -> tuple[int, int]:
    """Refuse non-square or non-image data and bad options in one line; returns ``(channels, size)``."""
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GankitError(f"{name} needs square images (channels, size, size), got data of shape {tuple(shape)}")
    if width <= 0:
        raise GankitError(f"{name} option width must be positive, got {width}")
    if norm not in NORMS:
        raise GankitError(f"{name} option norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return shape[0], shape[1]
