"""Builtin discriminator regularizers: weight clipping, gradient penalty, R1, R2 and spectral norm.

Formulas, defaults and papers: docs/regularizers.md.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

import gankit
from gankit.components import BoostSchedule, Regularizer
from gankit.errors import GankitError

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
WEIGHTED_LAYERS = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)
# A projection discriminator's class embedding is a linear map of the one-hot class: SNGAN-projection
# normalises it too (Miyato & Koyama 2018), which bounds how far the label alone moves a score.
SPECTRALLY_NORMALISED = (*WEIGHTED_LAYERS, nn.Embedding)


def refuse_batch_norm(name: str, discriminator: nn.Module) -> None:
    """A gradient penalty is a per-example constraint; BatchNorm makes each score depend on the whole batch."""
    if any(isinstance(module, BATCH_NORMS) for module in discriminator.modules()):
        raise GankitError(
            f"regularizer {name!r} penalises each example's gradient, but the discriminator has BatchNorm, which "
            "mixes the examples of a batch (Gulrajani et al. 2017); use the architecture's normalization option "
            "instead, e.g. --arch dcgan:norm=layer or --arch wgan:norm=layer"
        )


def input_gradients(discriminator: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """dD/dx at each example of ``points``, flattened to ``(N, -1)``, differentiable for the penalty."""
    points = points.detach().requires_grad_(True)
    (gradients,) = torch.autograd.grad(discriminator(points).sum(), points, create_graph=True)
    return gradients.flatten(1)


class WeightClipping(Regularizer):
    """WGAN's weight clipping (Arjovsky et al. 2017): every critic parameter is clamped to [-value, value].

    Clamped once before training and right after every critic optimizer step (the paper's Algorithm 1), so the
    critic the generator trains against, and the one a checkpoint holds, always satisfies the bound.
    """

    lipschitz = True

    def __init__(self, *, value: float = 0.01) -> None:
        if not value > 0:
            raise GankitError(f"regularizer 'clip' option value must be positive, got {value}")
        self.value = value

    def clamp(self, discriminator: nn.Module) -> None:
        with torch.no_grad():
            for parameter in discriminator.parameters():
                parameter.clamp_(-self.value, self.value)

    def prepare(self, *, generator, discriminator) -> None:
        # The reference code clamps before each critic update, so even the first one sees clipped weights.
        self.clamp(discriminator)

    def after_discriminator_step(self, *, discriminator) -> None:
        self.clamp(discriminator)


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): weight * mean((||dD/dx(x_hat)|| - 1)^2) on random interpolates.

    x_hat = e * real + (1 - e) * fake with e ~ U[0, 1] per example.
    """

    lipschitz = True
    # The paper's Adam settings for both networks and 5 critic updates, without WGAN's 100-update boosts:
    # its boost schedule never boosts, and outranks the loss's.
    recommended = {"optimizer": "adam", "lr": 1e-4, "lr_d": None, "lr_g": None, "betas": [0.0, 0.9], "d_steps": 5,
                   "lr_decay": 0.0}
    boost_schedule = BoostSchedule(warmup=0, every=0)

    def __init__(self, *, weight: float = 10.0) -> None:
        if not weight > 0:
            raise GankitError(f"regularizer 'gp' option weight must be positive, got {weight}")
        self.weight = weight

    def check(self, *, generator, discriminator, loss) -> None:
        refuse_batch_norm("gp", discriminator)

    def penalty(self, *, discriminator, real, fake, real_scores, fake_scores, step: int):
        shape = (real.shape[0],) + (1,) * (real.dim() - 1)
        mix = torch.rand(shape, device=real.device, dtype=real.dtype)
        interpolates = mix * real.detach() + (1 - mix) * fake.detach()
        norms = input_gradients(discriminator, interpolates).norm(2, dim=1)
        return self.weight * (norms - 1).pow(2).mean()


class ZeroCenteredPenalty(Regularizer):
    """gamma / 2 * mean(||dD/dx||^2) at the examples ``points`` picks: the shared form of R1 and R2.

    With ``every=k`` the penalty is applied lazily (Karras et al. 2020): only in generator steps divisible by
    k, multiplied by k so that its average strength is unchanged.
    """

    name = ""

    def __init__(self, *, gamma: float = 10.0, every: int = 1) -> None:
        if not gamma > 0:
            raise GankitError(f"regularizer {self.name!r} option gamma must be positive, got {gamma}")
        if every < 1:
            raise GankitError(f"regularizer {self.name!r} option every must be 1 or more, got {every}")
        self.gamma, self.every = gamma, every

    def points(self, *, real, fake):
        raise NotImplementedError

    def check(self, *, generator, discriminator, loss) -> None:
        refuse_batch_norm(self.name, discriminator)

    def penalty(self, *, discriminator, real, fake, real_scores, fake_scores, step: int):
        if step % self.every:
            return None
        squared_norms = input_gradients(discriminator, self.points(real=real, fake=fake)).pow(2).sum(1)
        return self.every * self.gamma / 2 * squared_norms.mean()


class R1Penalty(ZeroCenteredPenalty):
    """R1 (Mescheder et al. 2018): gamma / 2 * mean(||dD/dx(real)||^2), on real data only."""

    name = "r1"

    def points(self, *, real, fake):
        return real


class R2Penalty(ZeroCenteredPenalty):
    """R2 (Mescheder et al. 2018; with R1 in R3GAN, Huang et al. 2024): gamma / 2 * mean(||dD/dx(fake)||^2),
    on the (detached) fake data only."""

    name = "r2"

    def points(self, *, real, fake):
        return fake


class SpectralNorm(Regularizer):
    """Spectral normalization (Miyato et al. 2018) of every conv, linear and embedding layer of the discriminator.

    Each weight is divided by its largest singular value (of the weight reshaped to a matrix), estimated by
    power iteration, ``power_iterations`` per forward pass in training mode.
    """

    lipschitz = True

    def __init__(self, *, power_iterations: int = 1) -> None:
        if power_iterations < 1:
            raise GankitError(
                f"regularizer 'spectral-norm' option power_iterations must be 1 or more, got {power_iterations}"
            )
        self.power_iterations = power_iterations

    def check(self, *, generator, discriminator, loss) -> None:
        if not any(isinstance(module, WEIGHTED_LAYERS) for module in discriminator.modules()):
            raise GankitError("regularizer 'spectral-norm' found no conv or linear layer in the discriminator")

    def prepare(self, *, generator, discriminator) -> None:
        for module in list(discriminator.modules()):
            # A layer the architecture already normalises keeps its own parametrization.
            if isinstance(module, SPECTRALLY_NORMALISED) and not parametrize.is_parametrized(module, "weight"):
                spectral_norm(module, n_power_iterations=self.power_iterations)


@gankit.hookimpl
def gankit_register_regularizers(register):
    register(
        "clip",
        WeightClipping,
        description="WGAN weight clipping (Arjovsky et al. 2017); option: value (0.01)",
        aliases=("weight-clipping",),
    )
    register(
        "gp",
        GradientPenalty,
        description="WGAN-GP gradient penalty on interpolates (Gulrajani et al. 2017); option: weight (10)",
        aliases=("gradient-penalty",),
    )
    register(
        "r1",
        R1Penalty,
        description="R1 gradient penalty on real data (Mescheder et al. 2018); options: gamma (10), every (1)",
    )
    register(
        "r2",
        R2Penalty,
        description="R2 gradient penalty on fake data (Mescheder et al. 2018; R3GAN); options: gamma (10), every (1)",
    )
    register(
        "spectral-norm",
        SpectralNorm,
        description="spectral normalization of D's conv and linear layers (Miyato et al. 2018)",
        aliases=("sn",),
    )
