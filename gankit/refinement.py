"""Latent refinement: move each sample's noise a few small steps uphill on the discriminator's estimate of
``log p_data(x) / p_g(x)``, then generate from the moved noise.

A generator of a continuous latent draws thin "bridges" between separate modes; the discriminator's estimate
``r(G(z))`` is low on them and rises toward the modes on either side, while near the data it is flat (R1 makes it
so). Gradient ascent on ``r(G(z))`` in latent space therefore moves the noise of a bridge sample onto the nearest
mode and leaves the noise of a sample already in a mode almost where it was:

    z <- z + rate * grad_z r(G(z))        (steps times)

It is the latent-space refinement of Discriminator Optimal Transport (Tanaka 2019) without its transport cost,
and Discriminator Driven Latent Sampling (Che et al. 2020) without its prior and noise terms: deterministic, so
the same noise always gives the same sample, and mode-seeking rather than a sampler of ``p_data``. The steps
are few and small so that the noise stays near where it was drawn. docs/sampling.md has the measurements.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from gankit.errors import GankitError

DEFAULT_RATE = 1e-3
# More steps than this is not a refinement any more (and would run for very long): refused in one line.
MAX_STEPS = 10_000


def check_steps(value: Any) -> int:
    """``--refine N``: a whole number of steps, 1 to MAX_STEPS."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
        raise GankitError(f"--refine must be a whole number of steps from 1 to {MAX_STEPS}, got {value!r}")
    return value


def check_rate(value: Any) -> float:
    """``--refine-rate``: a positive, finite step size."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GankitError(f"--refine-rate must be a positive number, got {value!r}")
    return float(value)


def settings(steps: int | None, rate: float | None, *, drs: float | None = None) -> dict:
    """``latent_refiner``'s ``steps`` and ``rate`` for the Python API's ``refine``/``refine_rate`` (empty without
    ``refine``), checked: a rate without steps, or refinement together with ``drs``, is refused in one line."""
    if steps is None:
        if rate is not None:
            raise GankitError("refine_rate applies to latent refinement: give refine (a number of steps)")
        return {}
    if drs is not None:
        raise GankitError("refine and drs are two ways to use the discriminator: choose one")
    return {"steps": check_steps(steps), "rate": DEFAULT_RATE if rate is None else check_rate(rate)}


class LatentRefiner(nn.Module):
    """Stands in for a generator: ``refiner(z)`` is ``generator(z')``, where ``z'`` is ``z`` after ``steps``
    gradient-ascent steps of size ``rate`` on ``log_ratio(discriminator(generator(z)))``. Always in eval mode."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, log_ratio: Callable[[Any], torch.Tensor], *,
                 steps: int, rate: float = DEFAULT_RATE) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.log_ratio = log_ratio
        self.steps = check_steps(steps)
        self.rate = check_rate(rate)
        self.eval()

    def train(self, mode: bool = True) -> "LatentRefiner":
        """Always in eval mode: refining must neither update BatchNorm statistics nor run spectral norm's power
        iteration."""
        return super().train(False)

    def refine(self, z: torch.Tensor) -> torch.Tensor:
        """The noise after the steps (detached)."""
        with torch.enable_grad():
            for _ in range(self.steps):
                z = z.detach().requires_grad_(True)
                ratio = self.log_ratio(self.discriminator(self.generator(z))).float().reshape(-1)
                if not torch.isfinite(ratio).all():
                    raise GankitError("--refine: the discriminator gave a non-finite score (NaN or Inf)")
                (slope,) = torch.autograd.grad(ratio.sum(), z)  # per sample: the samples do not interact in eval mode
                z = z + self.rate * slope.to(z.dtype)
        if not torch.isfinite(z).all():
            raise GankitError(f"--refine moved the noise to non-finite values; lower --refine-rate (it is {self.rate:g})")
        return z.detach()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        moved = self.refine(z)
        with torch.no_grad():
            samples = self.generator(moved)
        if not torch.isfinite(samples).all():
            raise GankitError("--refine: the generator gave non-finite samples (NaN or Inf) for the refined noise")
        return samples


def latent_refiner(generator: nn.Module, metadata: dict, *, steps: int, rate: float = DEFAULT_RATE, device="cpu",
                   registry=None) -> LatentRefiner:
    """A :class:`LatentRefiner` for a generator loaded by ``gankit.inference.load_generator``: the discriminator
    comes from the same checkpoint, the log ratio from the run's loss (``gankit.density_ratio``, which refuses in
    one line what cannot work: conditional runs, losses without a ratio)."""
    from gankit.density_ratio import load_density_ratio

    steps, rate = check_steps(steps), check_rate(rate)
    discriminator, log_ratio = load_density_ratio(metadata, option="--refine", device=device, registry=registry)
    return LatentRefiner(generator, discriminator, log_ratio, steps=steps, rate=rate)


def sample(path: str | Path, count: int, *, steps: int, rate: float = DEFAULT_RATE, seed: int = 0, device="cpu",
           registry=None, ema: bool = True) -> torch.Tensor:
    """``count`` refined samples of a checkpoint's generator, from the noise ``gankit.sample`` would use for
    ``seed``: a CPU tensor ``(count, *shape)``."""
    from gankit.inference import check_count, draw_checked, load_generator

    check_count(count)
    steps, rate = check_steps(steps), check_rate(rate)
    generator, metadata = load_generator(path, registry=registry, device=device, ema=ema)
    refiner = latent_refiner(generator, metadata, steps=steps, rate=rate, device=device, registry=registry)
    return draw_checked(refiner, metadata, count, seed=seed, device=device)
