"""lr_decay: both learning rates fall linearly towards zero over the last fraction of the run."""
from __future__ import annotations

import pytest

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError


def rates_per_step(settings: dict, tmp_path) -> list[tuple[float, float]]:
    trainer = Trainer(RunConfig.from_sources(overrides=settings))
    seen = []
    step = trainer.train_step

    def recording_step(index):
        seen.append((trainer.optimizer_d.param_groups[0]["lr"], trainer.optimizer_g.param_groups[0]["lr"]))
        return step(index)

    trainer.train_step = recording_step
    trainer.train(tmp_path / "run")
    return seen


def test_lr_decay_over_the_whole_run_scales_both_rates_linearly(tiny_run, tmp_path):
    rates = rates_per_step({**tiny_run, "lr": 0.01, "lr_decay": 1.0}, tmp_path)
    assert [d for d, _ in rates] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert [g for _, g in rates] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])


def test_lr_decay_over_the_last_half_keeps_the_first_half_constant(tiny_run, tmp_path):
    rates = rates_per_step({**tiny_run, "lr": 0.01, "lr_d": 0.02, "lr_decay": 0.5, "steps": 8}, tmp_path)
    assert [g for _, g in rates] == pytest.approx([0.01] * 5 + [0.0075, 0.005, 0.0025])
    assert [d for d, _ in rates] == pytest.approx([0.02] * 5 + [0.015, 0.01, 0.005])


def test_without_lr_decay_the_rates_stay_constant(tiny_run, tmp_path):
    rates = rates_per_step({**tiny_run, "lr": 0.01, "lr_decay": 0.0}, tmp_path)  # digits recommends 0.5
    assert rates == [(0.01, 0.01)] * 4


def test_lr_decay_outside_zero_to_one_is_an_error(tiny_run):
    with pytest.raises(GankitError, match="lr-decay"):
        RunConfig.from_sources(overrides={**tiny_run, "lr_decay": 1.5}).validate()
