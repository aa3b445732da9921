"""Discriminator rejection sampling (Azadi et al. 2019): a trained generator's samples, each kept with a probability
that grows with the discriminator's estimate of how much likelier the data is than the generator at that sample.

A discriminator trained with a loss whose optimum is a density ratio (``Loss.log_density_ratio``: bce estimates
``log p_data(x) / p_g(x)``) tells where the generator puts mass the data lacks, e.g. the thin bridges a
generator draws between separate modes. Keeping a proposal ``x`` with probability ``min(1, exp(k (r(x) - M)))``,
where ``r`` is that estimate and ``M`` its 99th percentile over a burn-in of proposals, draws from
``p_g(x) * (p_data(x) / p_g(x))**k`` up to the cap: ``k = 1`` is the plain rule (the data distribution when the
discriminator is optimal), larger ``k`` keeps fewer samples where the data is thin. The paper takes the maximum
for ``M``; the percentile keeps one outlier from rejecting nearly everything.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from gankit.errors import GankitError

# How many proposals estimate M before the first sample, and which quantile of their log ratios M is.
DEFAULT_BURN_IN = 10_000
THRESHOLD_QUANTILE = 0.99
# A discriminator that rejects (nearly) everything would loop for ever: stop after this many proposals per sample.
MAX_PROPOSALS_PER_SAMPLE = 100


def check_sharpness(value: Any) -> float:
    """``--drs K``: a positive, finite exponent of the density ratio."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GankitError(f"--drs must be a positive number (1: the plain rule), got {value!r}")
    return float(value)


class RejectionSampler(nn.Module):
    """Stands in for a generator: ``sampler(z)`` returns ``len(z)`` samples of ``generator`` that passed the test.

    ``z`` sets only how many samples and on which device: the proposals' noise comes from the sampler's own
    stream, seeded with ``seed``, so one seed gives the same samples every time (the noise a sample came from is
    not the ``z`` passed in). ``log_ratio`` maps the discriminator's output on a batch to the estimate ``r(x)``
    of shape ``(N,)``. ``proposed`` and ``accepted`` count the proposals so far.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, log_ratio: Callable[[Any], torch.Tensor], *,
                 z_dim: int, sharpness: float = 1.0, seed: int = 0, burn_in: int = DEFAULT_BURN_IN,
                 batch_size: int = 500) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.log_ratio = log_ratio
        self.z_dim = z_dim
        self.sharpness = check_sharpness(sharpness)
        self.burn_in = burn_in
        self.batch_size = batch_size
        self.noise = torch.Generator().manual_seed(seed)
        self.threshold: float | None = None
        self.proposed = 0
        self.accepted = 0
        self.eval()

    def train(self, mode: bool = True) -> "RejectionSampler":
        """Always in eval mode: sampling must neither update BatchNorm statistics nor run spectral norm's power
        iteration (``generate`` puts a module back into the mode it found it in)."""
        return super().train(False)

    @property
    def acceptance(self) -> float:
        """The share of proposals kept so far (0 before any)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    def _propose(self, count: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(count, self.z_dim, generator=self.noise).to(device)
        samples = self.generator(noise)
        ratio = self.log_ratio(self.discriminator(samples)).float().reshape(-1)
        if not torch.isfinite(ratio).all():
            raise GankitError("rejection sampling: the discriminator gave a non-finite score (NaN or Inf)")
        return samples, ratio

    @torch.no_grad()
    def calibrate(self, device) -> float:
        """M: the 99th percentile of ``r`` over ``burn_in`` proposals (drawn once, before the first sample)."""
        if self.threshold is None:
            ratios = [self._propose(min(self.batch_size, self.burn_in - done), device)[1].cpu()
                      for done in range(0, self.burn_in, self.batch_size)]
            self.threshold = float(torch.quantile(torch.cat(ratios), THRESHOLD_QUANTILE))
        return self.threshold

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        count, device = len(z), z.device
        threshold = self.calibrate(device)
        kept: list[torch.Tensor] = []
        have, limit = 0, self.proposed + MAX_PROPOSALS_PER_SAMPLE * max(count, 1)
        while have < count:
            if self.proposed >= limit:
                raise GankitError(
                    f"rejection sampling kept {self.accepted} of {self.proposed} proposals, too few to draw "
                    f"{count} samples; lower --drs (it is {self.sharpness:g}) or sample without it"
                )
            samples, ratio = self._propose(self.batch_size, device)
            keep_probability = torch.exp(self.sharpness * (ratio - threshold)).clamp(max=1.0)
            keep = (torch.rand(len(ratio), generator=self.noise) < keep_probability.cpu()).to(samples.device)
            kept.append(samples[keep])
            have += int(keep.sum())
            self.proposed += len(ratio)
            self.accepted += int(keep.sum())
        return torch.cat(kept)[:count]


def rejection_sampler(generator: nn.Module, metadata: dict, *, sharpness: float, seed: int = 0, device="cpu",
                      registry=None, burn_in: int = DEFAULT_BURN_IN) -> RejectionSampler:
    """A :class:`RejectionSampler` for a generator loaded by ``gankit.inference.load_generator`` (its metadata
    names the checkpoint): the discriminator comes from the same checkpoint, the log ratio from the run's loss
    (``gankit.density_ratio``, which refuses in one line what cannot work).
    """
    from gankit.density_ratio import load_density_ratio

    sharpness = check_sharpness(sharpness)
    discriminator, log_ratio = load_density_ratio(metadata, option="--drs", device=device, registry=registry)
    return RejectionSampler(
        generator, discriminator, log_ratio, z_dim=int(metadata["z_dim"]), sharpness=sharpness, seed=seed,
        burn_in=burn_in,
    )


def sample(path: str | Path, count: int, *, sharpness: float, seed: int = 0, device="cpu", registry=None,
           ema: bool = True) -> torch.Tensor:
    """``count`` samples of a checkpoint's generator that pass the test, as a CPU tensor ``(count, *shape)``."""
    from gankit.inference import check_count, draw_checked, load_generator

    check_count(count)
    sharpness = check_sharpness(sharpness)
    generator, metadata = load_generator(path, registry=registry, device=device, ema=ema)
    sampler = rejection_sampler(generator, metadata, sharpness=sharpness, seed=seed, device=device, registry=registry)
    return draw_checked(sampler, metadata, count, seed=seed, device=device)
