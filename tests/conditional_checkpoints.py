"""Checkpoints of conditional runs written directly (no training): a plugin with tiny conditional architectures,
installed as an entry point through the ``install_entry_points`` fixture, and a writer for its checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch

from gankit.checkpoint import prefixed, save_checkpoint

PLUGIN = "condtoy"

PLUGIN_SOURCE = '''
import math

import torch
from torch import nn

import gankit


class ToyGenerator(nn.Module):
    """tanh(linear(z) + embedding(label)): a class changes every sample of a column the same way."""

    def __init__(self, shape, z_dim, num_classes):
        super().__init__()
        self.shape = tuple(shape)
        self.linear = nn.Linear(z_dim, math.prod(shape))
        self.embedding = nn.Embedding(num_classes, math.prod(shape)) if num_classes else None

    def forward(self, z, labels=None):
        values = self.linear(z)
        if self.embedding is not None:
            values = values + self.embedding(labels)
        return torch.tanh(values).reshape(len(z), *self.shape)


class Lookup(nn.Module):
    """Returns row ``label`` of its table whatever the noise: a generator whose output per class is known."""

    def __init__(self, shape, num_classes):
        super().__init__()
        self.register_buffer("table", torch.zeros(num_classes, *shape))

    def forward(self, z, labels):
        return self.table[labels.to(self.table.device)]


def discriminator(shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 1), nn.Flatten(0))


def toy(*, shape, z_dim, num_classes=None):
    return ToyGenerator(shape, z_dim, num_classes), discriminator(shape)


def lookup(*, shape, z_dim, num_classes):
    return Lookup(shape, num_classes), discriminator(shape)


def unconditional(*, shape, z_dim):
    return ToyGenerator(shape, z_dim, None), discriminator(shape)


@gankit.hookimpl
def gankit_register_architectures(register):
    register("cond-toy", toy, description="a tiny generator with a class embedding")
    register("lookup", lookup, description="a generator that returns a stored example per class")
    register("plain-toy", unconditional, description="a tiny generator that cannot condition")
'''


def install(install_entry_points) -> None:
    install_entry_points({PLUGIN: PLUGIN_SOURCE})


def write_checkpoint(path: Path, arch: str, generator_state: dict[str, torch.Tensor], *, shape, z_dim: int,
                     num_classes: int | None = None, class_names: list[str] | None = None,
                     data: str = "digits:count=256", **extra) -> Path:
    """A checkpoint of ``condtoy:<arch>`` holding ``generator_state``; ``num_classes``/``class_names`` as a
    conditional run records them (left out when None)."""
    metadata = {"step": 1, "shape": list(shape), "z_dim": z_dim, "config": {"arch": f"{PLUGIN}:{arch}", "data": data}}
    if num_classes is not None:
        metadata["num_classes"] = num_classes
    if class_names is not None:
        metadata["class_names"] = class_names
    metadata.update(extra)
    return save_checkpoint(path, prefixed("generator", generator_state), metadata)


def toy_state(shape, z_dim: int, num_classes: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for ``cond-toy`` (or ``plain-toy`` without classes)."""
    generator = torch.Generator().manual_seed(seed)
    size = int(torch.tensor(shape).prod())
    state = {"linear.weight": torch.randn(size, z_dim, generator=generator),
             "linear.bias": torch.randn(size, generator=generator) * 0.1}
    if num_classes:
        state["embedding.weight"] = torch.randn(num_classes, size, generator=generator)
    return state


def toy_generator(state: dict[str, torch.Tensor], shape):
    """The generator ``cond-toy`` computes, written out: ``(z, labels) -> samples``."""
    def generate(z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        values = z @ state["linear.weight"].T + state["linear.bias"]
        if labels is not None:
            values = values + state["embedding.weight"][labels]
        return torch.tanh(values).reshape(len(z), *shape)

    return generate


def invoke(*args):
    """``gankit ARGS`` through the CLI runner (arguments turned to strings)."""
    from typer.testing import CliRunner

    from gankit.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def one_line_error(result) -> str:
    """The single ``Error:`` line of a failed command (and no traceback)."""
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]
