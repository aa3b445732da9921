"""The ``acgan`` loss (Odena et al. 2017, issue 14): BCE plus the cross-entropy of the discriminator's class_logits,
its values by hand, its refusals, and a short hand-written training loop in which its classifier learns the
digits (the engine's conditional step is built elsewhere; this shows the pieces fit)."""
from __future__ import annotations

import math
import types

import pytest
import torch

from gankit.builtins.acgan import ACGANLoss
from gankit.builtins.dcgan import dcgan
from gankit.builtins.digits import DigitsDataSource
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry


def softplus(value: float) -> float:
    return math.log1p(math.exp(value))


def cross_entropy(logits: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


# Two examples, three classes: scores and logits small enough to check by hand.
REAL_SCORES = torch.tensor([1.0, -0.5])
FAKE_SCORES = torch.tensor([-2.0, 0.5])
REAL_LOGITS = [[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
FAKE_LOGITS = [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
LABELS = [0, 2]


def outputs(logits):
    return {"class_logits": torch.tensor(logits)}


def mean_cross_entropy(logits) -> float:
    return sum(cross_entropy(row, label) for row, label in zip(logits, LABELS)) / len(LABELS)


@pytest.mark.parametrize("weight, fake_weight", [(1.0, 1.0), (0.25, 1.0), (1.0, 0.0), (2.0, 0.5)])
def test_discriminator_loss_by_hand(weight, fake_weight):
    loss = ACGANLoss(weight=weight, fake_weight=fake_weight)
    value = loss.discriminator_loss(
        REAL_SCORES, FAKE_SCORES, real_outputs=outputs(REAL_LOGITS), fake_outputs=outputs(FAKE_LOGITS),
        labels=torch.tensor(LABELS),
    )
    # BCE: -log sigma(r) = softplus(-r) on real, -log(1 - sigma(f)) = softplus(f) on fake, each a batch mean.
    adversarial = (softplus(-1.0) + softplus(0.5)) / 2 + (softplus(-2.0) + softplus(0.5)) / 2
    expected = adversarial + weight * (mean_cross_entropy(REAL_LOGITS) + fake_weight * mean_cross_entropy(FAKE_LOGITS))
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("weight", [1.0, 3.0])
def test_generator_loss_by_hand(weight):
    loss = ACGANLoss(weight=weight)
    value = loss.generator_loss(FAKE_SCORES, fake_outputs=outputs(FAKE_LOGITS), labels=torch.tensor(LABELS))
    expected = (softplus(2.0) + softplus(-0.5)) / 2 + weight * mean_cross_entropy(FAKE_LOGITS)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_statistics_report_the_classifier_accuracy_of_the_last_discriminator_update():
    loss = ACGANLoss()
    loss.discriminator_loss(
        REAL_SCORES, FAKE_SCORES, real_outputs=outputs(REAL_LOGITS), fake_outputs=outputs(FAKE_LOGITS),
        labels=torch.tensor(LABELS),
    )
    statistics = {name: value.item() for name, value in loss.statistics(REAL_SCORES, FAKE_SCORES).items()}
    # Real: argmax 0 and 2 for labels 0 and 2, both right. Fake: argmax 1 and 0 (first of a tie), both wrong.
    assert statistics["acc_real"] == 1.0 and statistics["acc_fake"] == 0.0
    assert statistics["d_x"] == pytest.approx(torch.sigmoid(REAL_SCORES).mean().item())


def test_it_declares_the_class_logits_it_needs_and_registers_as_a_builtin():
    assert ACGANLoss.discriminator_outputs == ("class_logits",)
    registry = Registry(load_plugins(entry_points=False))
    built = registry.build("loss", "acgan:weight=0.5")
    assert isinstance(built.value, ACGANLoss) and built.value.weight == 0.5
    assert built.component.plugin == "acgan"


def test_check_refuses_a_run_that_is_not_conditional():
    loss = ACGANLoss()
    with pytest.raises(GankitError, match="loss 'acgan' .* needs a conditional run: add --conditional"):
        loss.check(config=types.SimpleNamespace(), regularizers=[])  # a config from before the field existed
    with pytest.raises(GankitError, match="--conditional"):
        loss.check(config=types.SimpleNamespace(conditional=False), regularizers=[])
    loss.check(config=types.SimpleNamespace(conditional=True), regularizers=[])


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_weight_must_be_a_positive_number(weight):
    with pytest.raises(GankitError, match="option weight must be a positive number"):
        ACGANLoss(weight=weight)


@pytest.mark.parametrize("fake_weight", [-0.5, float("nan"), float("inf")])
def test_fake_weight_must_be_a_number_of_at_least_zero(fake_weight):
    with pytest.raises(GankitError, match="option fake_weight must be a number >= 0"):
        ACGANLoss(fake_weight=fake_weight)


@pytest.mark.parametrize("bad_outputs, message", [
    ({}, r"needs the discriminator output 'class_logits', got \[\]"),
    ({"class_logits": torch.zeros(2)}, r"shape \(N, num_classes\)"),
    ({"class_logits": torch.zeros(3, 3)}, r"got \(3, 3\) and \(2,\)"),
])
def test_missing_or_misshapen_class_logits_are_one_line_errors(bad_outputs, message):
    with pytest.raises(GankitError, match=message):
        ACGANLoss().generator_loss(FAKE_SCORES, fake_outputs=bad_outputs, labels=torch.tensor(LABELS))


def test_the_classifier_learns_the_digits_in_a_short_training_loop():
    # The conditional step as the contract describes it: D on (real, labels) and on G(z, labels), then G on the
    # same fakes. The classifier's accuracy on real digits rises well above chance (0.1) within 20 steps (at
    # lr 1e-3 rather than the recommended 2e-4, to keep the test short).
    torch.manual_seed(0)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic sums, and no oversubscription on a shared CPU
    try:
        source = DigitsDataSource(count=256)
        images = source.tensor().float() / 127.5 - 1
        labels = source.labels() if callable(source.labels) else source.labels
        labels = labels.long()
        generator, discriminator = dcgan(
            shape=source.shape, z_dim=16, width=8, num_classes=10, discriminator_outputs=("class_logits",)
        )
        loss = ACGANLoss()
        optimizer_g = torch.optim.Adam(generator.parameters(), 1e-3, betas=(0.5, 0.999))
        optimizer_d = torch.optim.Adam(discriminator.parameters(), 1e-3, betas=(0.5, 0.999))
        accuracies = []
        for _ in range(20):
            index = torch.randint(0, len(images), (32,))
            real, batch_labels = images[index], labels[index]
            fake = generator(torch.randn(32, 16), batch_labels)
            real_scores, real_outputs = discriminator(real, batch_labels)
            fake_scores, fake_outputs = discriminator(fake.detach(), batch_labels)
            d_loss = loss.discriminator_loss(
                real_scores, fake_scores, real_outputs=real_outputs, fake_outputs=fake_outputs, labels=batch_labels
            )
            optimizer_d.zero_grad()
            d_loss.backward()
            optimizer_d.step()
            scores, fake_outputs = discriminator(fake, batch_labels)
            g_loss = loss.generator_loss(scores, fake_outputs=fake_outputs, labels=batch_labels)
            optimizer_g.zero_grad()
            g_loss.backward()
            optimizer_g.step()
            with torch.no_grad():
                accuracies.append(loss.statistics(real_scores.detach(), fake_scores.detach())["acc_real"].item())
    finally:
        torch.set_num_threads(previous_threads)
    assert all(math.isfinite(value) for value in (d_loss.item(), g_loss.item()))
    assert sum(accuracies[-5:]) / 5 > 0.25 > sum(accuracies[:5]) / 5
