"""The ``resnet`` architecture: a small residual generator and discriminator in the style of SNGAN/WGAN-GP.

    generator      z (N, z_dim) -> linear -> 8w x 4 x 4 -> up-blocks (each doubles the size) -> C x S x S, tanh
    discriminator  C x S x S -> down-blocks (each halves the size) -> ReLU, sum over space -> linear -> (N,)

``w`` is the ``width`` option. The discriminator has no normalisation layer and no sigmoid: it returns raw
scores, so it works with every gankit loss and with gradient penalties (which batch norm would break).

With ``num_classes`` (a conditional run) these are the SNGAN-projection networks (Miyato & Koyama 2018): the
up-blocks' BatchNorms are class-conditional, and the discriminator adds ``<embed(y), features>`` to its score.
Without it the networks are exactly the unconditional ones. The conditional pieces are written here, not
imported from gankit's builtins: a plugin only uses gankit's public modules.
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


DISCRIMINATOR_OUTPUTS = ("class_logits",)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


def _labels(labels: torch.Tensor | None, num_classes: int | None, count: int) -> torch.Tensor | None:
    """The int64 labels a network built with ``num_classes`` needs (None without), refused in one line otherwise.
    A uint8 or bool tensor would index the class tables as a mask, a float one truncate: refused."""
    if num_classes is None and labels is not None:
        raise GankitError("this resnet network was built without num_classes: it takes no labels")
    if num_classes is None:
        return None
    if labels is None:
        raise GankitError("a class-conditional resnet network needs the class labels: call it as network(x, labels)")
    if labels.dtype in (torch.bool, torch.uint8) or labels.dtype.is_floating_point or tuple(labels.shape) != (count,):
        raise GankitError(
            f"resnet needs class labels of shape ({count},) as integer class indices, got shape "
            f"{tuple(labels.shape)} of {labels.dtype}"
        )
    return labels.long()


class ClassBatchNorm(nn.Module):
    """BatchNorm without affine, then a per-class scale and shift starting at 1 and 0 (SNGAN-projection)."""

    def __init__(self, features: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False)
        self.gain = nn.Parameter(torch.ones(num_classes, features))
        self.bias = nn.Parameter(torch.zeros(num_classes, features))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # A lookup, not gain[labels], which would take a negative label as a class counted from the end.
        gain, bias = nn.functional.embedding(labels, self.gain), nn.functional.embedding(labels, self.bias)
        return self.norm(x) * gain[:, :, None, None] + bias[:, :, None, None]


class UpBlock(nn.Module):
    """BN, ReLU, nearest 2x upsample, conv; BN, ReLU, conv; plus an upsampled 1x1-conv shortcut.

    With ``num_classes`` both BNs are class-conditional and ``forward(x, labels)`` hands them the labels.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int | None = None) -> None:
        super().__init__()

        def norm(features: int) -> nn.Module:
            return nn.BatchNorm2d(features) if num_classes is None else ClassBatchNorm(features, num_classes)

        self.residual = nn.Sequential(
            norm(in_channels),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv3x3(in_channels, out_channels),
            norm(out_channels),
            nn.ReLU(),
            _conv3x3(out_channels, out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            return self.residual(x) + self.shortcut(x)
        hidden = x
        for layer in self.residual:
            hidden = layer(hidden, labels) if isinstance(layer, ClassBatchNorm) else layer(hidden)
        return hidden + self.shortcut(x)


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
    def __init__(self, *, channels: int, size: int, z_dim: int, width: int, num_classes: int | None = None) -> None:
        super().__init__()
        base, stages = PLANS[size]
        # Coarse to fine: 8w ... w channels (capped), one more entry than there are up-blocks.
        widths = [width * min(2 ** (stages - i), MAX_MULTIPLIER) for i in range(stages + 1)]
        self.base = base
        self.start_channels = widths[0]
        self.num_classes = num_classes
        self.project = nn.Linear(z_dim, widths[0] * base * base)
        self.blocks = nn.Sequential(
            *(UpBlock(inner, outer, num_classes) for inner, outer in zip(widths, widths[1:]))
        )
        # SNGAN-projection keeps this last BatchNorm unconditional too.
        self.to_image = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), _conv3x3(widths[-1], channels), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = _labels(labels, self.num_classes, z.shape[0])
        x = self.project(z.reshape(z.shape[0], -1)).view(z.shape[0], self.start_channels, self.base, self.base)
        if labels is None:
            return self.to_image(self.blocks(x))
        for block in self.blocks:
            x = block(x, labels)
        return self.to_image(x)


class Discriminator(nn.Module):
    """With ``num_classes``: a projection discriminator on the summed features, and optionally a linear
    classifier on them (``outputs=("class_logits",)``), returned as ``(scores, {"class_logits": logits})``.
    ``projection=False`` leaves the labels out of the score."""

    def __init__(self, *, channels: int, size: int, width: int, num_classes: int | None = None,
                 projection: bool = True, outputs: tuple[str, ...] = ()) -> None:
        super().__init__()
        _, stages = PLANS[size]
        # Fine to coarse: w ... 8w channels (capped), one per down-block.
        widths = [width * min(2**i, MAX_MULTIPLIER) for i in range(stages)]
        blocks = [DownBlock(channels, widths[0], first=True)]
        blocks += [DownBlock(inner, outer) for inner, outer in zip(widths, widths[1:])]
        self.blocks = nn.Sequential(*blocks)
        self.activation = nn.ReLU()
        self.score = nn.Linear(widths[-1], 1)
        self.num_classes = num_classes
        # Built after the unconditional layers, so those draw the same initial weights as without conditioning.
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes is not None and projection else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)  # as SNGAN-projection
        self.class_logits = nn.Linear(widths[-1], num_classes) if "class_logits" in outputs else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        if self.embed is not None or labels is not None:  # without projection the score needs no labels
            labels = _labels(labels, self.num_classes, x.shape[0])
        features = self.activation(self.blocks(x)).sum(dim=(2, 3))
        scores = self.score(features).reshape(x.shape[0])
        if self.embed is not None:
            scores = scores + (self.embed(labels) * features).sum(dim=1)
        if self.class_logits is None:
            return scores
        return scores, {"class_logits": self.class_logits(features)}


def resnet(*, shape: tuple[int, ...], z_dim: int, width: int = 16, projection: bool = True,
           num_classes: int | None = None, discriminator_outputs: tuple[str, ...] = ()):
    """Build the ResNet generator and discriminator for images of ``shape`` (C, S, S), S in 32, 64, 96, 128.

    ``num_classes`` (gankit passes it in a conditional run): ``generator(z, labels)``, ``discriminator(x,
    labels)``; ``projection`` (option) and ``discriminator_outputs`` (asked for by the loss) as described above.
    """
    sizes = ", ".join(map(str, SUPPORTED_SIZES))
    if len(shape) != 3 or shape[1] != shape[2]:
        raise GankitError(f"resnet needs square images (channels, size, size), got data of shape {tuple(shape)}")
    if shape[1] not in PLANS:
        raise GankitError(f"resnet supports square images of {sizes} pixels, got {shape[1]}x{shape[2]}")
    if width <= 0:
        raise GankitError(f"resnet option width must be positive, got {width}")
    outputs = _check_conditioning(num_classes, discriminator_outputs)
    channels, size = shape[0], shape[1]
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width, num_classes=num_classes)
    discriminator = Discriminator(
        channels=channels, size=size, width=width, num_classes=num_classes, projection=projection, outputs=outputs
    )
    return generator, discriminator


def _check_conditioning(num_classes, discriminator_outputs) -> tuple[str, ...]:
    outputs = (discriminator_outputs,) if isinstance(discriminator_outputs, str) else tuple(discriminator_outputs)
    for output in outputs:
        if output not in DISCRIMINATOR_OUTPUTS:
            raise GankitError(f"resnet cannot give the discriminator output {output!r}; it can give: class_logits")
    if num_classes is None and outputs:
        raise GankitError("resnet gives class_logits only for class-labelled data: run with --conditional")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
        raise GankitError(f"resnet needs num_classes of 2 or more, got {num_classes!r}")
    return outputs
