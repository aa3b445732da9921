"""Tiny networks for square images (a small conv net) and flat vectors (an MLP), conditional on request.

Conditioning follows docs/conditional.md: the generator sees a label embedding concatenated to z, the
discriminator is a projection discriminator (Miyato & Koyama 2018). Without `num_classes` the factory builds
the plain networks, with no embedding at all.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from gankit.errors import GankitError

IMAGE_SIZES = (8, 16, 32, 64)
SUPPORTED_OUTPUTS = ("class_logits",)


def tinycond(
    *,
    shape: tuple[int, ...],
    z_dim: int,
    num_classes: int = 0,
    discriminator_outputs: tuple[str, ...] = (),
    width: int = 16,
    embed: int = 8,
):
    """`num_classes` and `discriminator_outputs` are context gankit passes only when a run needs them."""
    unsupported = [name for name in discriminator_outputs if name not in SUPPORTED_OUTPUTS]
    if unsupported:
        raise GankitError(f"tinycond cannot return {', '.join(unsupported)}; it supports: {', '.join(SUPPORTED_OUTPUTS)}")
    if "class_logits" in discriminator_outputs and not num_classes:
        raise GankitError("tinycond returns class_logits only in a conditional run (--conditional)")
    if width < 1 or embed < 1:
        raise GankitError(f"tinycond needs width and embed of at least 1, got width={width}, embed={embed}")
    body = generator_body(shape, z_dim + (embed if num_classes else 0), width)
    features, feature_count = discriminator_features(shape, width)
    generator = Generator(body, num_classes, embed)
    discriminator = Discriminator(features, feature_count, num_classes, discriminator_outputs)
    return generator, discriminator


def generator_body(shape: tuple[int, ...], inputs: int, width: int) -> nn.Module:
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(inputs, 4 * width), nn.ReLU(), nn.Linear(4 * width, shape[0]), nn.Tanh())
    channels, size = image_geometry(shape)
    layers: list[nn.Module] = [nn.Linear(inputs, 2 * width * 16), nn.ReLU(), nn.Unflatten(1, (2 * width, 4, 4))]
    for _ in range(int(math.log2(size // 4)) - 1):
        layers += [nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU()]
    layers += [nn.ConvTranspose2d(2 * width, channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator_features(shape: tuple[int, ...], width: int) -> tuple[nn.Module, int]:
    """phi(x) of the projection discriminator; no batch norm, so a gradient penalty stays per example."""
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], 4 * width), nn.LeakyReLU(0.2)), 4 * width
    channels, size = image_geometry(shape)
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(size // 4))):
        layers += [nn.Conv2d(channels, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = 2 * width
    layers.append(nn.Flatten(1))
    return nn.Sequential(*layers), 2 * width * 16


def image_geometry(shape: tuple[int, ...]) -> tuple[int, int]:
    sizes = ", ".join(str(size) for size in IMAGE_SIZES)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in IMAGE_SIZES:
        raise GankitError(
            f"tinycond supports flat vectors (features,) and square images (channels, size, size) of {sizes} "
            f"pixels, got data of shape {tuple(shape)}"
        )
    return shape[0], shape[1]


class Generator(nn.Module):
    def __init__(self, body: nn.Module, num_classes: int, embed: int):
        super().__init__()
        # Only a conditional build has the embedding, so an unconditional one has no extra parameters or draws.
        self.embedding = nn.Embedding(num_classes, embed) if num_classes else None
        self.body = body

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embedding is not None:
            z = torch.cat([z, self.embedding(labels)], dim=1)
        return self.body(z)


class Discriminator(nn.Module):
    """score = linear(phi(x)) + <embedding(y), phi(x)>: raw, one per example."""

    def __init__(self, features: nn.Module, feature_count: int, num_classes: int, outputs: tuple[str, ...]):
        super().__init__()
        self.features = features
        self.linear = nn.Linear(feature_count, 1)
        self.projection = nn.Embedding(num_classes, feature_count) if num_classes else None
        self.class_logits = nn.Linear(feature_count, num_classes) if "class_logits" in outputs else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        features = self.features(x)
        scores = self.linear(features).squeeze(1)
        if self.projection is not None:
            scores = scores + (self.projection(labels) * features).sum(1)
        if self.class_logits is None:
            return scores
        return scores, {"class_logits": self.class_logits(features)}
