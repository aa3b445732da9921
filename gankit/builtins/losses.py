"""Builtin adversarial losses over raw discriminator scores: bce, minimax, wasserstein, hinge, least-squares,
rpgan.

Formulas, defaults and papers: docs/losses.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import gankit
from gankit.components import BoostSchedule, Loss
from gankit.errors import GankitError


class BCELoss(Loss):
    """The standard GAN loss (Goodfellow et al. 2014) with the non-saturating generator loss.

    Discriminator: BCE on logits, real labelled 1 and fake 0. Generator: -log D(G(z)), i.e. BCE of the fake
    scores against label 1, which keeps gradients alive when the discriminator wins.
    """

    recommended = {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "lr_decay": 0.0}

    def discriminator_loss(self, real_scores, fake_scores):
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return real + fake

    def generator_loss(self, fake_scores):
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))

    def statistics(self, real_scores, fake_scores):
        # D(x) and D(G(z)) as probabilities, as DCGAN papers and the article report them.
        return {"d_x": torch.sigmoid(real_scores).mean(), "d_g_z": torch.sigmoid(fake_scores).mean()}

    def log_density_ratio(self, scores):
        # The optimal discriminator is p_data / (p_data + p_g): its logit is log(p_data / p_g).
        return scores


class MinimaxLoss(BCELoss):
    """The original saturating minimax GAN loss (Goodfellow et al. 2014), kept for comparison.

    The discriminator's loss is BCE's; the generator minimises log(1 - D(G(z))) = -softplus(fake score), whose
    gradient vanishes exactly when the discriminator rejects the fakes confidently, early in training.
    """

    def generator_loss(self, fake_scores):
        return -F.softplus(fake_scores).mean()


# The WGAN reference code's critic schedule (Arjovsky et al. 2017): 100 critic updates for each of the first 25
# generator updates and for every 500th, so the critic is near its optimum when its estimate is trusted.
WGAN_SCHEDULE = BoostSchedule(boost=100, warmup=25, every=500)


class WassersteinLoss(Loss):
    """The WGAN loss (Arjovsky et al. 2017): the critic estimates the Wasserstein-1 distance.

    Critic: mean(D(fake)) - mean(D(real)); generator: -mean(D(fake)). The estimate (logged as ``wasserstein``)
    is the negated critic loss. It is only meaningful when the critic is kept Lipschitz (``--reg clip``, ``gp``
    or ``spectral-norm``), so a run without such a regularizer is refused.
    """

    # RMSprop at 5e-5, 5 critic updates and fresh generator noise: the reference code's defaults.
    recommended = {"optimizer": "rmsprop", "lr": 5e-5, "d_steps": 5, "generator_noise": "fresh", "lr_decay": 0.0}

    def __init__(self, *, schedule: bool = True) -> None:
        # Through the base class's discriminator_steps; False leaves every step at d_steps.
        self.boost_schedule = WGAN_SCHEDULE if schedule else None

    def discriminator_wins(self, record, *, threshold: float) -> bool:
        # A critic loss near zero means the two distributions are close, not that the critic won outright.
        return False

    def discriminator_loss(self, real_scores, fake_scores):
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores):
        return -fake_scores.mean()

    def statistics(self, real_scores, fake_scores):
        return {"wasserstein": real_scores.mean() - fake_scores.mean()}

    def check(self, *, config, regularizers) -> None:
        if not any(getattr(regularizer, "lipschitz", False) for regularizer in regularizers):
            raise GankitError(
                "loss 'wasserstein' needs a Lipschitz critic, or the critic loss diverges: add --reg clip (WGAN), "
                "--reg gp (WGAN-GP) or --reg spectral-norm"
            )


class HingeLoss(Loss):
    """The hinge loss of SAGAN and BigGAN (Lim & Ye 2017; Zhang et al. 2019; Brock et al. 2019).

    Discriminator: mean(relu(margin - D(real))) + mean(relu(margin + D(fake))); generator: -mean(D(fake)).
    """

    # SAGAN's two time-scale Adam settings.
    recommended = {"optimizer": "adam", "lr_d": 4e-4, "lr_g": 1e-4, "betas": [0.0, 0.9], "d_steps": 1,
                   "lr_decay": 0.0}

    def __init__(self, *, margin: float = 1.0) -> None:
        if not margin > 0:
            raise GankitError(f"loss 'hinge' option margin must be positive, got {margin}")
        self.margin = margin

    def discriminator_loss(self, real_scores, fake_scores):
        return F.relu(self.margin - real_scores).mean() + F.relu(self.margin + fake_scores).mean()

    def generator_loss(self, fake_scores):
        return -fake_scores.mean()


class LeastSquaresLoss(Loss):
    """The LSGAN loss (Mao et al. 2017), with the paper's a-b-c coding of the targets.

    Discriminator: 0.5 mean((D(real) - real_label)^2) + 0.5 mean((D(fake) - fake_label)^2);
    generator: 0.5 mean((D(fake) - generator_target)^2). Defaults 1, 0, 1 (the paper's 0-1 coding).
    """

    recommended = {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "lr_decay": 0.0}

    def __init__(self, *, real_label: float = 1.0, fake_label: float = 0.0, generator_target: float = 1.0) -> None:
        if real_label == fake_label:
            raise GankitError(f"loss 'least-squares': real_label and fake_label must differ, both are {real_label}")
        self.real_label, self.fake_label, self.generator_target = real_label, fake_label, generator_target

    def discriminator_loss(self, real_scores, fake_scores):
        return 0.5 * (real_scores - self.real_label).pow(2).mean() + 0.5 * (fake_scores - self.fake_label).pow(2).mean()

    def generator_loss(self, fake_scores):
        return 0.5 * (fake_scores - self.generator_target).pow(2).mean()

    def log_density_ratio(self, scores):
        # The optimal discriminator is (b p_data + a p_g) / (p_data + p_g) (Mao et al. 2017), so s = (D - a) / (b - a)
        # is p_data / (p_data + p_g) and log(s / (1 - s)) the log ratio; s is kept inside (0, 1).
        share = ((scores - self.fake_label) / (self.real_label - self.fake_label)).clamp(1e-6, 1 - 1e-6)
        return torch.log(share) - torch.log1p(-share)


class RelativisticPairingLoss(Loss):
    """RpGAN (Jolicoeur-Martineau 2019; Huang et al. 2024, R3GAN): each real example is paired with a fake one.

    Discriminator: mean(softplus(-(D(real) - D(fake)))); generator: mean(softplus(-(D(fake) - D(real)))), on
    the current real batch. With ``--reg r1 --reg r2`` it is R3GAN's objective.
    """

    generator_needs_real_scores = True
    # R3GAN's Adam settings at the start of its schedules (it anneals lr to 5e-5 and beta2 to 0.99).
    recommended = {"optimizer": "adam", "lr": 2e-4, "betas": [0.0, 0.9], "d_steps": 1, "lr_decay": 0.0}

    def discriminator_loss(self, real_scores, fake_scores):
        check_pairs(real_scores, fake_scores)
        return F.softplus(fake_scores - real_scores).mean()

    def generator_loss(self, fake_scores, real_scores=None):
        if real_scores is None:
            raise GankitError("loss 'rpgan' needs the discriminator's scores on real data in the generator step")
        check_pairs(real_scores, fake_scores)
        return F.softplus(real_scores - fake_scores).mean()


def check_pairs(real_scores, fake_scores) -> None:
    """A relativistic pairing loss compares each real example with one fake: the batches must match."""
    if real_scores.shape != fake_scores.shape:
        raise GankitError(
            f"loss 'rpgan' pairs each real example with a fake one, got {tuple(real_scores.shape)} real "
            f"and {tuple(fake_scores.shape)} fake scores"
        )


@gankit.hookimpl
def gankit_register_losses(register):
    register(
        "bce",
        BCELoss,
        description="BCE on logits, non-saturating generator loss (Goodfellow et al. 2014)",
        aliases=("standard", "non-saturating"),
    )
    register(
        "minimax",
        MinimaxLoss,
        description="the original saturating minimax loss (Goodfellow et al. 2014), for comparison",
        aliases=("saturating",),
    )
    register(
        "wasserstein",
        WassersteinLoss,
        description="WGAN critic loss (Arjovsky et al. 2017); needs --reg clip, gp or spectral-norm; option: schedule",
    )
    register(
        "hinge",
        HingeLoss,
        description="hinge loss of SAGAN/BigGAN (Lim & Ye 2017); option: margin",
    )
    register(
        "least-squares",
        LeastSquaresLoss,
        description="LSGAN (Mao et al. 2017); options: real_label, fake_label, generator_target",
        aliases=("lsgan",),
    )
    register(
        "rpgan",
        RelativisticPairingLoss,
        description="relativistic pairing loss of R3GAN (Huang et al. 2024); with --reg r1 --reg r2: R3GAN",
        aliases=("relativistic-pairing",),
    )
