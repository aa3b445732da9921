"""The ``dcgan`` architecture: the DCGAN networks of Radford et al. as the anime-faces article builds them.

At 96x96 the networks are the article's layer for layer:

    generator      z (N, z_dim, 1, 1) -> ConvT 6x6 -> 512 x 6 x 6 -> 256 x 12 -> 128 x 24 -> 64 x 48 -> C x 96, tanh
    discriminator  C x 96 -> 64 x 48 (no norm) -> 128 x 24 -> 256 x 12 -> 512 x 6 -> Conv 5x5 stride 2 -> 1 score

Other sizes add or remove a doubling stage: 32 and 64 and 128 start from 4x4. The discriminator returns raw
scores (no sigmoid): the loss owns the link function.

With ``num_classes`` (a conditional run) the generator's BatchNorms become class-conditional and the
discriminator gets a projection head; without it the networks are exactly the unconditional ones.
"""
from __future__ import annotations

import torch
from torch import nn

import gankit
from gankit.builtins import convnets
from gankit.builtins.conditioning import (
    ConditionalBatchNorm,
    ProjectionHead,
    check_conditioning,
    label_maps_conv,
    refuse_labels,
    require_labels,
    run_layers,
)

# Sizes 6 * 2**k (24 to 192; the article's 96) start from a 6x6 map, 4 * 2**k (16 to 256) from 4x4.
BASES = (6, 4)


def plan(size: int) -> tuple[int, int]:
    return convnets.plan(size, bases=BASES, name="dcgan")


class Generator(nn.Module):
    """With ``num_classes``, the class enters twice: as a learned class code beside the noise at the input, and
    through class-conditional BatchNorm (the SNGAN-projection generator's way), which sets the scale and shift of
    each layer's features at every resolution.

    Adam moves each parameter by about the learning rate per step, so plain BatchNorm gains that start at 1
    move by at most ~0.2 in the default 1,000 steps, too little to tell classes apart: the class tables here
    move ten times as fast (``ConditionalBatchNorm``'s ``scale``), and a code and input weights that start at
    DCGAN's N(0, 0.02) can grow tenfold. A code as long as z did better than a one-hot vector (class
    consistency 0.88 against 0.84 on the default digits run, seed 0); one drawn from N(0, 1) like z, worse
    (0.70, and 3 classes lost). docs/conditional.md has the measurements."""

    def __init__(self, *, channels: int, size: int, z_dim: int, width: int, num_classes: int | None = None) -> None:
        super().__init__()
        base, stages = plan(size)
        self.z_dim = z_dim
        self.num_classes = num_classes
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]
        # The article's first layer: a transposed conv from the 1x1 noise map to base x base.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim + (z_dim if num_classes else 0), widths[0], base, 1 if base == 4 else 2, 0, bias=False),
            self._norm(widths[0]),
            nn.ReLU(True),
        ]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), self._norm(outer), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        if num_classes is not None:
            # A learned class code as long as z, beside it (DCGAN's init_weights draws it from N(0, 0.02)).
            self.class_code = nn.Embedding(num_classes, z_dim)

    def _norm(self, features: int) -> nn.Module:
        if self.num_classes is None:
            return nn.BatchNorm2d(features)
        return ConditionalBatchNorm(features, self.num_classes)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        noise = z.view(z.shape[0], self.z_dim, 1, 1)
        if self.num_classes is None:
            refuse_labels("dcgan", labels)
            return self.main(noise)
        labels = require_labels(labels, z.shape[0], self.num_classes)  # checked once for every layer
        first, *rest = self.main
        return run_layers(rest, self._first_layer(first, noise, labels), labels)

    def _first_layer(self, first: nn.ConvTranspose2d, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``first(cat([noise, class_code(labels)]))``, with the class part computed once per class: the layer is
        linear and its input is a 1x1 map, so each class's code gives one fixed response. Half the layer's work,
        the code's half, is then done for the classes rather than for every example."""
        weight = first.weight  # (z_dim + code, out, k, k): input channels first in a transposed conv
        conv = lambda inputs, part: nn.functional.conv_transpose2d(  # noqa: E731
            inputs, part, None, first.stride, first.padding, first.output_padding, first.groups, first.dilation
        )
        codes = self.class_code.weight.to(noise.dtype)[:, :, None, None]
        responses = conv(codes, weight[self.z_dim:])
        return conv(noise, weight[: self.z_dim]) + nn.functional.embedding(labels, responses.flatten(1)).view(
            -1, *responses.shape[1:]
        )


class Discriminator(nn.Module):
    """With ``num_classes``, the labels enter at every layer: as one-hot maps beside the image channels (the cGAN
    discriminator's input), as a learned bias per class on the output of each later conv, and through a
    projection head (Miyato & Koyama 2018). The last conv stays the unconditional linear part and the
    projection ``<embed(y), phi(x)>`` acts on phi(x), the last feature map summed over space (as SNGAN's ResNet
    discriminator). Not the flattened map: at sizes 6 * 2**k the last conv (5x5, stride 2 on 6x6) is no linear
    map of the whole flattened map, and an embedding per class of C x H x W values would cost far more.

    Why all three: on the default digits run, projection alone left the class nearly unused after 400 steps
    (10% to 23% of samples drawn as the class asked for, 10% being chance); the one-hot input maps raised that
    to 64% at 400 steps; the biases of the later convs raised the class consistency of the default 1,000-step
    run from 0.872 / 0.890 / 0.863 to 0.911 / 0.880 / 0.890 (seeds 0-2; docs/conditional.md has the
    measurements). The input maps cost almost nothing: :func:`label_maps_conv` convolves each class's map once
    per batch. With a ``class_logits`` head the maps and biases are left out, so that the classifier learns the
    classes from the image rather than reading them off its input. ``projection=False`` uses none of them: the
    discriminator ignores the labels (the original ACGAN's).
    """

    def __init__(self, *, channels: int, size: int, width: int, norm: str, num_classes: int | None = None,
                 projection: bool = True, outputs: tuple[str, ...] = ()) -> None:
        super().__init__()
        base, stages = plan(size)
        widths = [width * 2**i for i in range(stages)]
        # Not beside a classifier head: it would read the class off its input instead of learning it (ACGAN).
        labelled_input = num_classes is not None and projection and "class_logits" not in outputs
        self.label_maps = num_classes if labelled_input else 0
        layers: list[nn.Module] = [
            nn.Conv2d(channels + self.label_maps, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)
        ]
        for inner, outer in zip(widths, widths[1:]):
            layers += [nn.Conv2d(inner, outer, 4, 2, 1, bias=False), convnets.norm_layer(norm, outer), nn.LeakyReLU(0.2, True)]
        # The article's last layer at 96x96 is a 5x5 conv with stride 2 on the 6x6 map; on 4x4 a 4x4 conv.
        final_kernel, final_stride = (5, 2) if base == 6 else (4, 1)
        layers.append(nn.Conv2d(widths[-1], 1, final_kernel, final_stride, 0, bias=False))
        self.main = nn.Sequential(*layers)
        # Built after the unconditional layers, so those are constructed exactly as without conditioning.
        # A learned bias per class on the output of each later conv, before its normalization.
        self.class_bias = nn.ModuleList(
            [nn.Embedding(num_classes, outer) for outer in widths[1:]]
        ) if labelled_input else None
        self.head = None if num_classes is None else ProjectionHead(
            widths[-1], num_classes, projection=projection, outputs=outputs
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        if self.head is None:
            refuse_labels("dcgan", labels)
            return self.main(x).reshape(x.shape[0])
        first, *body, final = self.main
        x = first(x) if not self.label_maps else label_maps_conv(first, x, labels, self.label_maps)
        biases = iter(self.class_bias or ())
        for layer in body:
            x = layer(x)
            if self.class_bias is not None and isinstance(layer, nn.Conv2d):
                x = x + next(biases)(labels)[:, :, None, None].to(x.dtype)
        return self.head(final(x).reshape(x.shape[0]), x.sum(dim=(2, 3)), labels)


def dcgan(*, shape: tuple[int, ...], z_dim: int, width: int = 64, norm: str = "batch", projection: bool = True,
          num_classes: int | None = None, discriminator_outputs: tuple[str, ...] = ()):
    """Build the DCGAN generator and discriminator for image ``shape`` (C, H, W) with H == W.

    ``num_classes`` (a conditional run): ``generator(z, labels)`` and ``discriminator(x, labels)``; the
    discriminator projects the labels unless ``projection`` is false. ``discriminator_outputs=("class_logits",)``
    adds a classifier head: the discriminator then returns ``(scores, {"class_logits": logits})``.
    """
    channels, size = convnets.check_image_options("dcgan", shape, width=width, norm=norm)
    outputs = check_conditioning("dcgan", num_classes=num_classes, discriminator_outputs=discriminator_outputs)
    generator = Generator(channels=channels, size=size, z_dim=z_dim, width=width, num_classes=num_classes)
    discriminator = Discriminator(
        channels=channels, size=size, width=width, norm=norm, num_classes=num_classes, projection=projection,
        outputs=outputs,
    )
    generator.apply(convnets.init_weights)
    discriminator.apply(convnets.init_weights)
    return generator, discriminator


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "dcgan",
        dcgan,
        description="DCGAN (Radford et al. 2016), the article's networks; options: width, norm, projection "
        "(conditional runs)",
    )
