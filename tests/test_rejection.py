"""Discriminator rejection sampling (gankit sample/eval --drs): the rule draws what it claims from a known density
ratio, is seeded, refuses what it cannot do in one line, and works from a run's checkpoint."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gankit.api import sample, train
from gankit.builtins.losses import BCELoss, LeastSquaresLoss
from gankit.cli import app
from gankit.errors import GankitError
from gankit.rejection import MAX_PROPOSALS_PER_SAMPLE, RejectionSampler, check_sharpness

from known_ratio import Identity, KnownRatio

runner = CliRunner()


def draw(sharpness: float, count: int = 20_000, seed: int = 0, **options) -> tuple[torch.Tensor, RejectionSampler]:
    sampler = RejectionSampler(Identity(), KnownRatio(), lambda scores: scores, z_dim=1, sharpness=sharpness,
                               seed=seed, **options)
    return sampler(torch.zeros(count, 1)), sampler


def test_the_plain_rule_draws_the_data_from_an_exact_ratio_and_a_larger_exponent_sharpens_it():
    samples, sampler = draw(1.0)
    assert samples.shape == (20_000, 1)
    # p_g * ratio = N(0, 0.5^2); the 99th-percentile cap flattens the top 1% of the ratio, a little wider.
    assert 0.49 < float(samples.std()) < 0.54
    assert 0.45 < sampler.acceptance < 0.6  # about E_pg[ratio] / M
    # K = 2: p_g * ratio^2 ∝ exp(-x^2/2 - 3 x^2), std 1/sqrt(7) = 0.378.
    sharper, _ = draw(2.0)
    assert 0.36 < float(sharper.std()) < 0.40


def test_the_sampler_keeps_its_networks_in_eval_mode():
    generator, discriminator = nn.BatchNorm1d(1), KnownRatio()
    sampler = RejectionSampler(generator, discriminator, lambda s: s, z_dim=1, burn_in=100)
    sampler.train()
    sampler(torch.zeros(10, 1))
    assert not sampler.training and not generator.training and not discriminator.training
    assert float(generator.running_mean) == 0.0  # no batch statistics were taken


def test_one_seed_gives_the_same_samples_and_another_seed_others():
    first, _ = draw(1.0, count=500, seed=3)
    again, _ = draw(1.0, count=500, seed=3)
    other, _ = draw(1.0, count=500, seed=4)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_the_exponent_must_be_a_positive_number(bad):
    with pytest.raises(GankitError, match="--drs must be a positive number"):
        check_sharpness(bad)


def test_a_discriminator_that_rejects_nearly_everything_stops_with_one_line():
    class Turns(nn.Module):  # agrees during the burn-in, then scores everything far below its threshold
        calls = 0

        def forward(self, x):
            self.calls += 1
            return torch.zeros(len(x)) if self.calls <= 2 else torch.full((len(x),), -1000.0)

    sampler = RejectionSampler(Identity(), Turns(), lambda s: s, z_dim=1, seed=0, burn_in=1000)
    with pytest.raises(GankitError, match="rejection sampling kept 0 of .* proposals"):
        sampler(torch.zeros(5, 1))
    assert sampler.proposed >= MAX_PROPOSALS_PER_SAMPLE * 5


def test_a_non_finite_score_is_refused():
    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((len(x),), float("nan"))

    with pytest.raises(GankitError, match="non-finite score"):
        RejectionSampler(Identity(), Broken(), lambda s: s, z_dim=1)(torch.zeros(3, 1))


def test_the_losses_that_estimate_a_ratio_say_so():
    scores = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.equal(BCELoss().log_density_ratio(scores), scores)  # the logit of p_data / (p_data + p_g)
    # LSGAN's optimum (b p_data + a p_g) / (p_data + p_g): D = 0.8 with labels 0, 1 means a ratio of 4.
    ratio = LeastSquaresLoss().log_density_ratio(torch.tensor([0.8]))
    assert float(ratio) == pytest.approx(math.log(4.0), rel=1e-5)
    coded = LeastSquaresLoss(real_label=1.0, fake_label=-1.0).log_density_ratio(torch.tensor([0.6]))
    assert float(coded) == pytest.approx(math.log(4.0), rel=1e-5)
    assert torch.isfinite(LeastSquaresLoss().log_density_ratio(torch.tensor([-5.0, 7.0]))).all()
    from gankit.registry import default_registry

    for name in ("wasserstein", "hinge", "rpgan"):
        assert default_registry().build("loss", name).value.log_density_ratio(scores) is None


def test_sample_and_eval_from_a_run_with_drs(grid_run, tmp_path):
    out = tmp_path / "kept.npy"
    result = runner.invoke(app, ["sample", str(grid_run), "-n", "300", "--drs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "rejection sampling, --drs 2" in result.output and "of the proposals kept" in result.output
    kept = np.load(out)
    assert kept.shape == (300, 2) and np.isfinite(kept).all()
    # The Python API draws the same samples for the same seed.
    assert np.array_equal(sample(grid_run, 300, drs=2).numpy(), kept)
    result = runner.invoke(app, ["eval", str(grid_run), "--metric", "modes", "--drs", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["drs"] == 1.0 and 0 < report["acceptance"] <= 1 and report["samples"] == 2500


def test_drs_works_through_a_spectrally_normalised_discriminator(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "reg": ["spectral-norm"], "steps": 20, "checkpoint_every": 20}, tmp_path / "sn")
    assert sample(run, 50, drs=1).shape == (50, 2)


@pytest.mark.parametrize("args, fragment", [
    (["--drs", "0"], "--drs must be a positive number"),
    (["--drs", "nan"], "--drs must be a positive number"),
    (["--drs", "1", "--interpolate", "3", "--out", "{tmp}/walk.gif"], "--drs does not apply to --interpolate"),
])
def test_bad_drs_use_fails_with_one_line(grid_run, tmp_path, args, fragment):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "s.npy")]
    result = runner.invoke(app, ["sample", str(grid_run), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and fragment in lines[0], result.output
    assert not list(tmp_path.iterdir())


def test_a_loss_without_a_density_ratio_is_refused_in_one_line(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "loss": "hinge", "steps": 4, "checkpoint_every": 4}, tmp_path / "hinge")
    result = runner.invoke(app, ["eval", str(run), "--metric", "modes", "--drs", "1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "--drs needs a discriminator that estimates the density ratio" in lines[0] and "hinge" in lines[0]


def test_a_conditional_run_is_refused_in_one_line(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "conditional": True, "steps": 4, "checkpoint_every": 4}, tmp_path / "conditional")
    with pytest.raises(GankitError, match="--drs samples unconditional runs"):
        sample(run, 10, drs=1)
