"""The ``mlp`` architecture for vector data, e.g. the 2-D benchmarks: fully connected ReLU networks.

With ``num_classes`` (a conditional run) the generator reads the class as a one-hot vector beside z and the
discriminator gets a projection head; without it the networks are exactly the unconditional ones.
"""
from __future__ import annotations

import math

import torch
from torch import nn

import gankit
from gankit.builtins.conditioning import ProjectionHead, check_conditioning, one_hot, refuse_labels
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
    """z -> ``depth`` hidden ReLU layers -> data; linear output (vector data need not lie in [-1, 1]).

    With ``num_classes`` the input is z and the one-hot class: the first layer's weights on the one-hot part
    are a learned class embedding added to its pre-activation (Mirza & Osindero 2014), with no extra module.
    """

    def __init__(self, *, shape: tuple[int, ...], z_dim: int, width: int, depth: int,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.net = _stack(z_dim + (num_classes or 0), width, depth, math.prod(shape), nn.ReLU)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes is None:
            refuse_labels("mlp", labels)
            return self.net(z).reshape(z.shape[0], *self.shape)
        inputs = torch.cat([z, one_hot(labels, self.num_classes, like=z)], dim=1)
        return self.net(inputs).reshape(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """data -> ``depth`` hidden LeakyReLU layers -> one raw score.

    With ``num_classes``, the labels enter twice, as for ``dcgan``: the one-hot class beside the input and a
    projection head, phi(x) the last hidden layer and the output layer its unconditional linear part (with a
    ``class_logits`` head only the projection: the classifier must not read the class off its input).
    ``projection=False``: neither (the discriminator ignores the labels).
    """

    def __init__(self, *, features: int, width: int, depth: int, num_classes: int | None = None,
                 projection: bool = True, outputs: tuple[str, ...] = ()) -> None:
        super().__init__()
        # Not beside a classifier head: it would read the class off its input instead of learning it (ACGAN).
        labelled_input = num_classes is not None and projection and "class_logits" not in outputs
        self.label_inputs = num_classes if labelled_input else 0
        self.net = _stack(features + self.label_inputs, width, depth, 1, lambda: nn.LeakyReLU(0.2))
        self.head = None if num_classes is None else ProjectionHead(
            width, num_classes, projection=projection, outputs=outputs
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        if self.head is None:
            refuse_labels("mlp", labels)
            return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape[0])
        *body, final = self.net
        hidden = x.reshape(x.shape[0], -1)
        if self.label_inputs:
            hidden = torch.cat([hidden, one_hot(labels, self.label_inputs, like=hidden)], dim=1)
        for layer in body:
            hidden = layer(hidden)
        return self.head(final(hidden).reshape(x.shape[0]), hidden, labels)


def mlp(*, shape: tuple[int, ...], z_dim: int, width: int = 400, depth: int = 3, pack: int = 1,
        g_width: int | None = None, d_width: int | None = None, projection: bool = True,
        num_classes: int | None = None, discriminator_outputs: tuple[str, ...] = ()):
    """Generator and discriminator of ``depth`` hidden layers of ``width`` units; ``pack`` > 1 is PacGAN.

    ``g_width`` / ``d_width`` give one network its own width (e.g. a generator wider than its discriminator).
    ``num_classes``, ``projection`` and ``discriminator_outputs`` as for ``dcgan`` (docs/architectures.md).
    """
    if len(shape) != 1:
        raise GankitError(f"mlp is for vector data of shape (features,), got data of shape {tuple(shape)}")
    g_width = width if g_width is None else g_width
    d_width = width if d_width is None else d_width
    for name, value in (("width", width), ("depth", depth), ("pack", pack), ("g_width", g_width),
                        ("d_width", d_width)):
        if value <= 0:
            raise GankitError(f"mlp option {name} must be positive, got {value}")
    outputs = check_conditioning("mlp", num_classes=num_classes, discriminator_outputs=discriminator_outputs)
    if num_classes is not None and pack > 1:
        raise GankitError("mlp option pack > 1 cannot condition on classes: a pack mixes examples of several "
                          "classes; use pack=1 with --conditional")
    generator = MLPGenerator(shape=shape, z_dim=z_dim, width=g_width, depth=depth, num_classes=num_classes)
    discriminator: nn.Module = MLPDiscriminator(
        features=pack * shape[0], width=d_width, depth=depth, num_classes=num_classes, projection=projection,
        outputs=outputs,
    )
    if pack > 1:
        discriminator = PackedDiscriminator(discriminator, pack)
    return generator, discriminator


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "mlp",
        mlp,
        description="Fully connected networks for vector data (e.g. ring, grid); options: width, depth, pack, "
        "g_width, d_width, projection (conditional runs)",
    )
