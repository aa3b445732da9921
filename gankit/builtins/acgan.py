"""The ``acgan`` loss (Odena et al. 2017): the BCE GAN loss plus an auxiliary classifier of the class labels.

Formulas, defaults and papers: docs/losses.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import gankit
from gankit.components import Loss
from gankit.errors import GankitError


class ACGANLoss(Loss):
    """AC-GAN: the discriminator also classifies every example (its ``class_logits`` output).

    Discriminator: BCE on logits (real 1, fake 0) + weight * (CE(real logits, labels)
    + fake_weight * CE(fake logits, labels)). Generator: non-saturating BCE + weight * CE(fake logits, labels):
    the fakes must look real and be recognisable as the class they were generated for.

    ``fake_weight`` 1 is the paper's. 0 trains the classifier on real examples only: then it cannot learn to
    name each fake by the label it was made for (the generator and classifier agreeing on class codes that are
    not the real classes), and the generator must match what real examples of the class look like.
    """

    discriminator_outputs = ("class_logits",)
    # The paper trains as DCGAN does: Adam, lr 2e-4, beta1 0.5.
    recommended = {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "lr_decay": 0.0}

    def __init__(self, *, weight: float = 1.0, fake_weight: float = 1.0) -> None:
        # The paper weights the adversarial and the classification terms equally: weight 1.
        if not weight > 0 or weight == float("inf"):
            raise GankitError(f"loss 'acgan' option weight must be a positive number, got {weight}")
        if not 0 <= fake_weight < float("inf"):
            raise GankitError(f"loss 'acgan' option fake_weight must be a number >= 0, got {fake_weight}")
        self.weight, self.fake_weight = weight, fake_weight
        self.accuracy: dict[str, torch.Tensor] = {}

    def discriminator_loss(self, real_scores, fake_scores, *, real_outputs, fake_outputs, labels):
        real_logits, fake_logits = class_logits(real_outputs, labels), class_logits(fake_outputs, labels)
        adversarial = (F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
                       + F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores)))
        classification = F.cross_entropy(real_logits, labels)
        if self.fake_weight:
            classification = classification + self.fake_weight * F.cross_entropy(fake_logits, labels)
        # statistics() only receives the scores: keep the last discriminator update's accuracies (no host sync).
        self.accuracy = {"acc_real": accuracy(real_logits, labels), "acc_fake": accuracy(fake_logits, labels)}
        return adversarial + self.weight * classification

    def generator_loss(self, fake_scores, *, fake_outputs, labels):
        adversarial = F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
        return adversarial + self.weight * F.cross_entropy(class_logits(fake_outputs, labels), labels)

    def statistics(self, real_scores, fake_scores):
        # D(x) and D(G(z)) as probabilities, as for bce; the classifier's accuracy on the real and on the fake
        # batch of the last discriminator update, which shows it learn the classes and the generator follow them.
        return {"d_x": torch.sigmoid(real_scores).mean(), "d_g_z": torch.sigmoid(fake_scores).mean(), **self.accuracy}

    def check(self, *, config, regularizers) -> None:
        if not getattr(config, "conditional", False):
            raise GankitError(
                "loss 'acgan' classifies the examples by class, so it needs a conditional run: add --conditional "
                "with labelled data (e.g. --data digits)"
            )


def class_logits(outputs, labels) -> torch.Tensor:
    """The discriminator's ``class_logits`` output, checked against the labels, in one line when it is wrong."""
    logits = outputs.get("class_logits") if isinstance(outputs, dict) else None
    if logits is None:
        raise GankitError(
            "loss 'acgan' needs the discriminator output 'class_logits', got "
            f"{sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__}"
        )
    if logits.dim() != 2 or labels.shape != logits.shape[:1] or labels.dtype != torch.int64:
        raise GankitError(
            f"loss 'acgan' needs class_logits of shape (N, num_classes) for int64 labels of shape (N,), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)} of {labels.dtype}"
        )
    return logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(dim=1) == labels).float().mean()


@gankit.hookimpl
def gankit_register_losses(register):
    register(
        "acgan",
        ACGANLoss,
        description="AC-GAN (Odena et al. 2017): BCE plus a class-label classifier in D; conditional runs only; "
        "options: weight (1.0), fake_weight (1.0; 0: classify real examples only)",
    )
