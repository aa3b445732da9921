"""Latent refinement (gankit sample/eval --refine): the step is gradient ascent on the discriminator's density
ratio, exactly; it leaves the networks as they were, keeps the noise-to-sample map deterministic, moves samples
toward higher ratio from a real run, and refuses what it cannot do in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gankit.api import sample, train
from gankit.cli import app
from gankit.errors import GankitError
from gankit.inference import sample_noise
from gankit.refinement import DEFAULT_RATE, LatentRefiner, check_rate, check_steps

from known_ratio import Identity, KnownRatio

runner = CliRunner()


def test_each_step_is_exactly_gradient_ascent_on_the_ratio():
    z = torch.tensor([[1.0], [-2.0], [0.0]])
    rate = 0.05
    refiner = LatentRefiner(Identity(), KnownRatio(), lambda s: s, steps=3, rate=rate)
    # z <- z + rate * (-3 z) three times.
    assert torch.allclose(refiner(z), z * (1 - 3 * rate) ** 3)
    assert torch.allclose(refiner.refine(z), z * (1 - 3 * rate) ** 3)


def test_refining_is_deterministic_works_without_gradients_and_leaves_the_networks_alone():
    generator = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    discriminator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    before = {k: v.clone() for k, v in {**generator.state_dict(), **discriminator.state_dict()}.items()}
    refiner = LatentRefiner(generator, discriminator, lambda s: s.reshape(-1), steps=4, rate=0.1)
    refiner.train()
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # as gankit's sampling calls it
        first = refiner(z)
    assert torch.equal(first, refiner(z)) and not torch.equal(first, generator.eval()(z))
    assert not refiner.training and not generator.training and not discriminator.training
    after = {**generator.state_dict(), **discriminator.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BatchNorm statistics, no weight change
    assert all(p.grad is None for p in [*generator.parameters(), *discriminator.parameters()])


@pytest.mark.parametrize("bad", [0, -1, 10_001, 2.5, True, "3"])
def test_the_number_of_steps_must_be_a_whole_number_in_range(bad):
    with pytest.raises(GankitError, match="--refine must be a whole number of steps"):
        check_steps(bad)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_the_rate_must_be_a_positive_number(bad):
    with pytest.raises(GankitError, match="--refine-rate must be a positive number"):
        check_rate(bad)


def test_a_step_too_large_for_the_numbers_is_refused_in_one_line():
    refiner = LatentRefiner(Identity(), KnownRatio(), lambda s: s, steps=1, rate=1e38)
    with pytest.raises(GankitError, match="non-finite values; lower --refine-rate"):
        refiner(torch.tensor([[1e3]]))


def test_a_non_finite_score_is_refused():
    class Broken(nn.Module):
        def forward(self, x):
            return x[:, 0] * float("nan")

    with pytest.raises(GankitError, match="non-finite score"):
        LatentRefiner(Identity(), Broken(), lambda s: s, steps=1)(torch.zeros(3, 1))


def test_sample_and_eval_from_a_run_with_refine(grid_run, tmp_path):
    out = tmp_path / "refined.npy"
    result = runner.invoke(app, ["sample", str(grid_run), "-n", "300", "--refine", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "latent refinement, --refine 5, rate 0.001" in result.output
    refined = np.load(out)
    assert refined.shape == (300, 2) and np.isfinite(refined).all()
    # The same noise as without --refine, moved: the Python API draws the same samples for the same seed.
    assert np.array_equal(sample(grid_run, 300, refine=5).numpy(), refined)
    assert not np.array_equal(sample(grid_run, 300).numpy(), refined)
    result = runner.invoke(app, ["eval", str(grid_run), "--metric", "modes", "--refine", "3", "--refine-rate",
                                 "0.002", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["refine"] == 3 and report["refine_rate"] == 0.002 and report["samples"] == 2500


def test_refined_samples_score_higher_with_the_runs_discriminator(grid_run):
    from gankit.density_ratio import load_density_ratio
    from gankit.inference import load_generator

    generator, metadata = load_generator(grid_run)
    discriminator, log_ratio = load_density_ratio(metadata, option="--refine")
    with torch.no_grad():
        plain, refined = sample(grid_run, 1000), sample(grid_run, 1000, refine=10)
        before, after = log_ratio(discriminator(plain)).reshape(-1), log_ratio(discriminator(refined)).reshape(-1)
    assert float(after.mean()) > float(before.mean())
    # Small steps: every sample stays near where its noise put it.
    assert float((refined - plain).norm(dim=1).max()) < 1.0


@pytest.mark.parametrize("args, fragment", [
    (["--refine", "0"], "--refine must be a whole number of steps"),
    (["--refine", "5", "--refine-rate", "0"], "--refine-rate must be a positive number"),
    (["--refine-rate", "0.01"], "--refine-rate applies to latent refinement: add --refine N"),
    (["--refine", "5", "--drs", "1"], "--refine and --drs are two ways to use the discriminator"),
])
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_bad_refine_use_fails_with_one_line(grid_run, tmp_path, args, fragment, command):
    extra = ["--out", str(tmp_path / "s.npy")] if command == "sample" else ["--metric", "modes"]
    result = runner.invoke(app, [command, str(grid_run), *args, *extra])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and fragment in lines[0], result.output
    assert not list(tmp_path.iterdir())


def test_refine_works_through_a_spectrally_normalised_discriminator(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "reg": ["spectral-norm"], "steps": 20, "checkpoint_every": 20}, tmp_path / "sn")
    from gankit.inference import load_generator
    from gankit.refinement import latent_refiner

    generator, metadata = load_generator(run)
    refiner = latent_refiner(generator, metadata, steps=3)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    first = refiner(z)
    assert first.shape == (50, 2) and torch.isfinite(first).all()
    assert torch.equal(refiner(z), first)  # the same module again: no power iteration moved the normalised weights
    assert torch.equal(sample(run, 50, refine=3), refiner(sample_noise(50, 2, seed=0)))


def test_the_api_refuses_what_it_cannot_do(grid_run):
    with pytest.raises(GankitError, match="refine and drs are two ways"):
        sample(grid_run, 10, drs=1, refine=2)
    with pytest.raises(GankitError, match="refine_rate applies to latent refinement"):
        sample(grid_run, 10, refine_rate=0.01)
    assert DEFAULT_RATE == 1e-3


def test_a_loss_without_a_density_ratio_is_refused_in_one_line(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "loss": "hinge", "steps": 4, "checkpoint_every": 4}, tmp_path / "hinge")
    result = runner.invoke(app, ["sample", str(run), "--refine", "3", "--out", str(tmp_path / "s.npy")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "--refine needs a discriminator that estimates the density ratio" in lines[0] and "hinge" in lines[0]
    assert not (tmp_path / "s.npy").exists()


def test_a_conditional_run_is_refused_in_one_line(tmp_path, one_thread, grid_run_config):
    run = train({**grid_run_config, "conditional": True, "steps": 4, "checkpoint_every": 4}, tmp_path / "conditional")
    result = runner.invoke(app, ["eval", str(run), "--metric", "modes", "--refine", "3"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "--refine samples unconditional runs" in lines[0], result.output
