"""The builtin losses: closed forms on fixed scores, recommendations, options and the checks they make."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.registry import default_registry

REAL = [2.0, -1.0, 0.5]
FAKE = [-0.5, 1.5, -3.0]


def scores():
    return torch.tensor(REAL), torch.tensor(FAKE)


def mean(values) -> float:
    return sum(values) / len(values)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def build(spec: str):
    return default_registry().build("loss", spec).value


def losses(spec: str) -> tuple[float, float]:
    loss = build(spec)
    real, fake = scores()
    return float(loss.discriminator_loss(real, fake)), float(loss.generator_loss(fake))


# -- closed forms --------------------------------------------------------------------------------------


def test_bce_and_minimax_share_the_discriminator_loss_but_not_the_generator_loss():
    # -log sigmoid(r) = softplus(-r); -log(1 - sigmoid(f)) = softplus(f).
    expected_d = mean([softplus(-r) for r in REAL]) + mean([softplus(f) for f in FAKE])
    bce_d, bce_g = losses("bce")
    minimax_d, minimax_g = losses("minimax")
    assert bce_d == pytest.approx(expected_d, rel=1e-6)
    assert minimax_d == pytest.approx(expected_d, rel=1e-6)
    assert bce_g == pytest.approx(mean([softplus(-f) for f in FAKE]), rel=1e-6)  # -log D(G(z))
    assert minimax_g == pytest.approx(mean([-softplus(f) for f in FAKE]), rel=1e-6)  # log(1 - D(G(z)))


def test_minimax_generator_gradient_saturates_where_non_saturating_does_not():
    fake = torch.tensor([-8.0], requires_grad=True)  # the discriminator confidently rejects the fake
    build("minimax").generator_loss(fake).backward()
    saturating = abs(float(fake.grad))
    fake.grad = None
    build("bce").generator_loss(fake).backward()
    assert saturating < 1e-3 < abs(float(fake.grad))


def test_wasserstein_closed_form_and_estimate():
    critic, generator = losses("wasserstein")
    assert critic == pytest.approx(mean(FAKE) - mean(REAL))
    assert generator == pytest.approx(-mean(FAKE))
    real, fake = scores()
    estimate = float(build("wasserstein").statistics(real, fake)["wasserstein"])
    assert estimate == pytest.approx(-critic)


def test_hinge_closed_form_with_default_and_custom_margin():
    d, g = losses("hinge")
    assert d == pytest.approx(mean([max(0.0, 1 - r) for r in REAL]) + mean([max(0.0, 1 + f) for f in FAKE]))
    assert g == pytest.approx(-mean(FAKE))
    d2, _ = losses("hinge:margin=2")
    assert d2 == pytest.approx(mean([max(0.0, 2 - r) for r in REAL]) + mean([max(0.0, 2 + f) for f in FAKE]))


def test_least_squares_closed_form_and_label_options():
    d, g = losses("least-squares")
    assert d == pytest.approx(0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f**2 for f in FAKE]))
    assert g == pytest.approx(0.5 * mean([(f - 1) ** 2 for f in FAKE]))
    # The paper's other coding: a = -1, b = 1, c = 0.
    d, g = losses("lsgan:fake_label=-1,generator_target=0")
    assert d == pytest.approx(0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([(f + 1) ** 2 for f in FAKE]))
    assert g == pytest.approx(0.5 * mean([f**2 for f in FAKE]))


# -- recommendations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("wasserstein", {"optimizer": "rmsprop", "lr": 5e-5, "d_steps": 5, "generator_noise": "fresh",
                         "d_steps_boost": 100, "d_steps_warmup": 25, "d_steps_boost_every": 500,
                         "collapse_steps": 0}),
        ("hinge", {"optimizer": "adam", "lr_d": 4e-4, "lr_g": 1e-4, "betas": [0.0, 0.9], "d_steps": 1}),
        ("least-squares", {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1}),
        ("minimax", {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1}),
    ],
)
def test_recommended_training_settings(spec, expected):
    assert dict(build(spec).recommended) == expected


def test_wasserstein_schedule_can_be_switched_off():
    recommended = build("wasserstein:schedule=false").recommended
    assert "d_steps_warmup" not in recommended and "d_steps_boost_every" not in recommended
    assert recommended["d_steps"] == 5


def test_hinge_recommended_rates_reach_the_optimizers_and_a_user_lr_outranks_them(tiny_run):
    trainer = Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": "hinge"}))
    assert trainer.optimizer_d.param_groups[0]["lr"] == 4e-4
    assert trainer.optimizer_g.param_groups[0]["lr"] == 1e-4
    trainer = Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": "hinge", "lr": 3e-4}))
    assert trainer.optimizer_d.param_groups[0]["lr"] == 3e-4
    assert trainer.optimizer_g.param_groups[0]["lr"] == 3e-4


# -- options and checks ---------------------------------------------------------------------------------


def test_unknown_loss_option_lists_the_valid_ones():
    with pytest.raises(GankitError, match=r"loss 'hinge' has no option 'margn'; valid options: margin \(float\) = 1.0"):
        build("hinge:margn=1")


def test_wrong_option_type_is_an_error():
    with pytest.raises(GankitError, match="option 'margin' must be float, got 'wide'"):
        build("hinge:margin=wide")
    with pytest.raises(GankitError, match="option 'schedule' must be bool"):
        build("wasserstein:schedule=maybe")


@pytest.mark.parametrize(
    "spec, message",
    [("hinge:margin=0", "margin must be positive"), ("least-squares:real_label=0", "must differ")],
)
def test_meaningless_option_values_are_refused(spec, message):
    with pytest.raises(GankitError, match=message):
        build(spec)


def test_wasserstein_without_a_lipschitz_regularizer_is_refused_before_training(tiny_run):
    with pytest.raises(GankitError, match="needs a Lipschitz critic.*--reg clip"):
        Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": "wasserstein"}))
    # r1 penalises gradients on real data only: it does not bound the critic.
    with pytest.raises(GankitError, match="needs a Lipschitz critic"):
        Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": "wasserstein", "reg": ["r1"],
                                                  "arch": "dcgan:width=8,norm=layer"}))


@pytest.mark.parametrize("spec", ["minimax", "hinge:margin=1", "least-squares"])
def test_each_loss_trains_and_its_resolved_options_go_into_the_run_config(tiny_run, tmp_path, spec):
    out = Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": spec, "steps": 2})).train(tmp_path / "run")
    text = (out / "config.toml").read_text()
    name, _, options = spec.partition(":")
    assert f'loss = "losses:{name}{":margin=1.0" if options else ""}"' in text
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)


def test_logged_wasserstein_estimate_is_the_negated_critic_loss(tiny_run, tmp_path):
    settings = {**tiny_run, "loss": "wasserstein:schedule=false", "reg": ["clip"], "steps": 3, "d_steps": 2}
    out = Trainer(RunConfig.from_sources(overrides=settings)).train(tmp_path / "run")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["wasserstein"] == pytest.approx(-record["d_loss"], abs=2e-6)
        assert record["wasserstein"] == pytest.approx(record["score_real"] - record["score_fake"], abs=2e-6)
