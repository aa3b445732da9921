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


def test_rpgan_closed_form_pairs_each_real_score_with_its_fake_partner():
    loss = build("rpgan")
    real, fake = scores()
    expected_d = mean([softplus(-(r - f)) for r, f in zip(REAL, FAKE)])
    expected_g = mean([softplus(-(f - r)) for r, f in zip(REAL, FAKE)])
    assert float(loss.discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-6)
    assert float(loss.generator_loss(fake, real_scores=real)) == pytest.approx(expected_g, rel=1e-6)
    assert loss.generator_needs_real_scores
    # A pairing, not two means: reordering the fakes changes the loss.
    assert float(loss.discriminator_loss(real, fake.flip(0))) != pytest.approx(expected_d, rel=1e-3)


def test_rpgan_gradients_flow_through_both_terms():
    # d/df softplus(r - f) = -sigmoid(r - f); d/dr = +sigmoid(r - f); each over the batch size.
    real = torch.tensor(REAL, requires_grad=True)
    fake = torch.tensor(FAKE, requires_grad=True)
    build("rpgan").generator_loss(fake, real_scores=real).backward()
    sigmoid = [1 / (1 + math.exp(-(r - f))) for r, f in zip(REAL, FAKE)]
    assert fake.grad.tolist() == pytest.approx([-s / 3 for s in sigmoid], rel=1e-5)
    assert real.grad.tolist() == pytest.approx([s / 3 for s in sigmoid], rel=1e-5)
    real.grad, fake.grad = None, None
    build("rpgan").discriminator_loss(real, fake).backward()
    sigmoid = [1 / (1 + math.exp(-(f - r))) for r, f in zip(REAL, FAKE)]
    assert fake.grad.tolist() == pytest.approx([s / 3 for s in sigmoid], rel=1e-5)
    assert real.grad.tolist() == pytest.approx([-s / 3 for s in sigmoid], rel=1e-5)


def test_rpgan_refuses_unpaired_batches_and_a_generator_step_without_real_scores():
    loss = build("rpgan")
    with pytest.raises(GankitError, match=r"pairs each real example with a fake one, got \(3,\) real and \(2,\) fake"):
        loss.discriminator_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(GankitError, match="needs the discriminator's scores on real data"):
        loss.generator_loss(torch.zeros(3))


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
                         "lr_decay": 0.0}),
        ("rpgan", {"optimizer": "adam", "lr": 2e-4, "betas": [0.0, 0.9], "d_steps": 1, "lr_decay": 0.0}),
        ("hinge", {"optimizer": "adam", "lr_d": 4e-4, "lr_g": 1e-4, "betas": [0.0, 0.9], "d_steps": 1, "lr_decay": 0.0}),
        ("least-squares", {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "lr_decay": 0.0}),
        ("minimax", {"optimizer": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "d_steps": 1, "lr_decay": 0.0}),
    ],
)
def test_recommended_training_settings(spec, expected):
    assert dict(build(spec).recommended) == expected


def test_wasserstein_supplies_the_reference_critic_schedule_unless_switched_off():
    # 100 critic updates for the first 25 generator updates and every 500th; base (d_steps) otherwise.
    steps = (0, 24, 25, 499, 500, 501, 1000)
    assert [build("wasserstein").discriminator_steps(step, 5) for step in steps] == [100, 100, 5, 5, 100, 5, 100]
    assert {build("wasserstein:schedule=false").discriminator_steps(step, 5) for step in steps} == {None}
    assert build("wasserstein:schedule=false").recommended["d_steps"] == 5


def test_a_small_critic_loss_is_no_collapse_for_wasserstein_but_is_for_bce():
    record = {"d_loss": 0.001, "g_loss": 3.0}
    assert not build("wasserstein").discriminator_wins(record, threshold=0.01)
    assert build("bce").discriminator_wins(record, threshold=0.01)
    assert not build("bce").discriminator_wins({"d_loss": 0.5, "g_loss": 3.0}, threshold=0.01)


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


@pytest.mark.parametrize("spec", ["minimax", "hinge:margin=1", "least-squares", "rpgan"])
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


def test_gankit_run_r3gan_objective_on_the_ring_stays_finite(tmp_path, one_thread):
    from typer.testing import CliRunner

    from gankit.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--data", "ring:count=1024", "--loss", "rpgan", "--reg", "r1", "--reg", "r2", "--steps", "30",
        "--batch-size", "64", "--log-every", "5", "--device", "cpu", "--quiet", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert 'loss = "losses:rpgan"' in (out / "config.toml").read_text()
    assert 'reg = ["regularizers:r1", "regularizers:r2"]' in (out / "config.toml").read_text()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_loss"]) for r in records)
    assert (out / "checkpoints").is_dir() and list((out / "checkpoints").glob("*.safetensors"))
