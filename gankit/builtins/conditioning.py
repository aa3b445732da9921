"""Class conditioning shared by the builtin architectures: class-conditional BatchNorm for generators and the
projection head of a class-conditional discriminator (Miyato & Koyama 2018) with its optional classifier."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from gankit.errors import GankitError

# The extra discriminator outputs a loss may ask the builtin architectures for (Loss.discriminator_outputs).
DISCRIMINATOR_OUTPUTS = ("class_logits",)


def check_conditioning(name: str, *, num_classes, discriminator_outputs: Iterable[str]) -> tuple[str, ...]:
    """Refuse a bad ``num_classes`` or an output the discriminator cannot give, in one line; returns the outputs
    as a tuple."""
    outputs = (discriminator_outputs,) if isinstance(discriminator_outputs, str) else tuple(discriminator_outputs)
    unknown = [output for output in outputs if output not in DISCRIMINATOR_OUTPUTS]
    if unknown:
        raise GankitError(
            f"architecture {name!r} cannot give the discriminator output {unknown[0]!r}; it can give: "
            f"{', '.join(DISCRIMINATOR_OUTPUTS)}"
        )
    if num_classes is None:
        if outputs:
            raise GankitError(
                f"architecture {name!r} gives the discriminator output {outputs[0]!r} only for class-labelled "
                "data: run with --conditional"
            )
        return outputs
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise GankitError(f"architecture {name!r} needs num_classes of 2 or more, got {num_classes!r}")
    return outputs


def require_labels(labels: torch.Tensor | None, count: int, num_classes: int | None = None) -> torch.Tensor:
    """The class indices of a batch of ``count`` examples as int64, which a class-conditional network needs.

    A uint8 or bool tensor would index as a mask and a float one truncate silently: refused, like a wrong shape.
    With ``num_classes``, a label outside ``[0, num_classes)`` is refused too (a lookup would fail with an
    IndexError, or on a GPU with a device-side assert); the check reads the labels' range, one device sync.
    """
    if labels is None:
        raise GankitError("a class-conditional network needs the class labels: call it as network(input, labels)")
    if labels.dtype in (torch.bool, torch.uint8) or labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise GankitError(f"class labels must be integer class indices (int64), got dtype {labels.dtype}")
    if tuple(labels.shape) != (count,):
        raise GankitError(f"class labels must have shape ({count},), one per example, got {tuple(labels.shape)}")
    if num_classes is not None:
        check_label_range(labels, num_classes)
    return labels.long()


def check_label_range(labels: torch.Tensor, num_classes: int) -> None:
    """Refuse a label outside ``[0, num_classes)`` with one line."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise GankitError(f"class labels must be in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}")


def refuse_labels(name: str, labels: torch.Tensor | None) -> None:
    """An unconditional network given labels would silently ignore them (e.g. samples of the wrong class)."""
    if labels is not None:
        raise GankitError(f"this {name} network was built without num_classes: it takes no labels")


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own scale and shift, then a scale and shift per class (de Vries et al. 2017, as in
    the SNGAN-projection generator). They start at 1 and 0, so every class starts as plain BatchNorm.

    ``scale`` is a learning-rate multiplier for the tables (the equalized learning rate of Karras et al.
    2018): class y's scale is ``1 + scale * (gains[y] - 1)`` and its shift ``scale * shifts[y]``. Adam moves a
    parameter by about the learning rate per step whatever its gradient's size, so at Adam 2e-4 plain tables
    (``scale=1``) had moved by at most ~0.2 after a 1,000-step run, too little to tell classes apart. With the
    default 10 the conditional digits run at Adam 2e-4 (before the digits recipe's higher rate) drew 0.939 /
    0.921 / 0.935 of its samples as their class (seeds 0-2), against 0.911 / 0.880 / 0.890 with plain tables;
    with the digits recipe, 0.988 (seed 0; docs/conditional.md).
    """

    def __init__(self, features: int, num_classes: int, *, eps: float = 1e-5, scale: float = 10.0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(features, affine=False, eps=eps)
        self.scale = scale
        # Plain tables rather than nn.Embedding: no random draw at construction, only the 1 / 0 start. Named
        # apart from the scale-1 tables (gain, bias) of earlier versions, whose checkpoints would be misread.
        self.gains = nn.Parameter(torch.ones(num_classes, features))
        self.shifts = nn.Parameter(torch.zeros(num_classes, features))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = require_labels(labels, x.shape[0])
        shape = (x.shape[0], -1, 1, 1)
        # A lookup, not gain[labels]: indexing would take a negative label as a class counted from the end.
        gain, bias = nn.functional.embedding(labels, self.gains), nn.functional.embedding(labels, self.shifts)
        gain, bias = 1 + self.scale * (gain - 1), self.scale * bias
        return torch.addcmul(bias.view(shape), self.norm(x), gain.view(shape))  # one pass, not a product then a sum


def run_layers(layers: nn.Sequential, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``layers(x)``, giving the labels to the class-conditional BatchNorms among them."""
    for layer in layers:
        x = layer(x, labels) if isinstance(layer, ConditionalBatchNorm) else layer(x)
    return x


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """The labels as one-hot rows in ``like``'s dtype, to concatenate to an input."""
    return nn.functional.one_hot(require_labels(labels, like.shape[0], num_classes), num_classes).to(like.dtype)


def label_maps_conv(conv: nn.Conv2d, x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``conv(cat([x, maps]))`` where ``maps`` are the labels' one-hot maps (one constant map per class, as many
    as ``conv`` has input channels beyond ``x``'s), computed without building the maps.

    A conv is linear: its output is the conv of the image channels plus the conv of the maps, and the maps of
    class k convolve to one fixed response, the conv of a map of ones with class k's input weights. So the
    image channels are convolved per example and the class responses once per batch. On a grayscale image
    with 10 classes the concatenated input had 11 channels, which made the first layer 11 times as costly.
    """
    labels = require_labels(labels, x.shape[0])
    if conv.padding_mode != "zeros" or conv.groups != 1:  # not the builtin layers: the plain way
        maps = one_hot(labels, num_classes, like=x)[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return conv(torch.cat([x, maps], dim=1))
    weight = conv.weight  # read once: a spectral-norm parametrization runs its power iteration on each read
    channels, out = weight.shape[1] - num_classes, weight.shape[0]
    image = nn.functional.conv2d(x, weight[:, :channels], conv.bias, conv.stride, conv.padding, conv.dilation)
    per_class_weight = weight[:, channels:].transpose(0, 1).reshape(num_classes * out, 1, *weight.shape[2:])
    ones = x.new_ones(1, 1, *x.shape[2:])
    responses = nn.functional.conv2d(ones, per_class_weight, None, conv.stride, conv.padding, conv.dilation)
    responses = responses.view(num_classes, out, *image.shape[2:])
    check_label_range(labels, num_classes)  # a lookup that refuses a label outside the classes, as the one-hot maps did
    return image + responses.index_select(0, labels).to(image.dtype)


class ProjectionHead(nn.Module):
    """The label-dependent part of a class-conditional discriminator, on features ``phi(x)`` of shape (N, F).

    Projection (Miyato & Koyama 2018): the unconditional score plus ``<embed(y), phi(x)>``; without it the
    scores ignore the labels (the original ACGAN discriminator). ``class_logits``: a linear classifier on
    ``phi(x)``, returned as ``(scores, {"class_logits": (N, num_classes)})``.
    """

    def __init__(self, features: int, num_classes: int, *, projection: bool, outputs: tuple[str, ...]) -> None:
        super().__init__()
        # spectral-norm normalises this embedding like the layers, as SNGAN-projection does (its SNEmbedID).
        self.embed = nn.Embedding(num_classes, features) if projection else None
        if self.embed is not None:
            # DCGAN's N(0, 0.02), not SNGAN-projection's Xavier (about 10x larger here): a large random embedding
            # starts every class with a random offset of its score that the discriminator must first unlearn.
            # Not zero either: spectral norm divides by the largest singular value.
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.class_logits = nn.Linear(features, num_classes) if "class_logits" in outputs else None

    def forward(self, scores: torch.Tensor, features: torch.Tensor, labels: torch.Tensor | None):
        if self.embed is not None:
            scores = scores + (self.embed(require_labels(labels, features.shape[0])) * features).sum(dim=1)
        if self.class_logits is None:
            return scores
        return scores, {"class_logits": self.class_logits(features)}
