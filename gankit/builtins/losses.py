"""Builtin adversarial losses, over raw discriminator scores."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import gankit
from gankit.components import Loss


class BCELoss(Loss):
    """The standard GAN loss (Goodfellow et al. 2014) with the non-saturating generator loss.

    Discriminator: BCE on logits, real labelled 1 and fake 0. Generator: -log D(G(z)), i.e. BCE of the fake
    scores against label 1, which keeps gradients alive when the discriminator wins.
    """

    recommended = {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1}

    def discriminator_loss(self, real_scores, fake_scores):
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return real + fake

    def generator_loss(self, fake_scores):
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))

    def statistics(self, real_scores, fake_scores):
        # D(x) and D(G(z)) as probabilities, as DCGAN papers and the article report them.
        return {"d_x": torch.sigmoid(real_scores).mean(), "d_g_z": torch.sigmoid(fake_scores).mean()}


@gankit.hookimpl
def gankit_register_losses(register):
    register(
        "bce",
        BCELoss,
        description="BCE on logits, non-saturating generator loss (Goodfellow et al. 2014)",
        aliases=("standard", "non-saturating"),
    )
