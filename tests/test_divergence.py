"""The divergence guard: NaN/Inf stops before anything bad is written, or rolls back; collapse warns or rolls back."""
from __future__ import annotations

import json
import math

import pytest
import torch

import gankit
from gankit.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint
from gankit.components import Loss
from gankit.config import RunConfig
from gankit.divergence import DivergenceGuard, nonfinite_tensors
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry

GUARD_RUN = {
    "arch": "dcgan:width=8", "data": "digits:count=256", "batch_size": 32, "steps": 8, "z_dim": 16,
    "device": "cpu", "checkpoint_every": 2, "log_every": 1, "sample_every": 2, "keep_checkpoints": 0,
    "lr": 2e-4, "lr_decay": 0.0,  # the article's constant rate (digits recommends a higher one, decayed)
}


# torch on one thread (tests/conftest.py): same arithmetic in every run compared, no fight over cores.
pytestmark = pytest.mark.usefixtures("one_thread")


class CollapsingLoss(Loss):
    """The article's failure on demand: the discriminator loss stays near zero while the generator's climbs."""

    def __init__(self) -> None:
        self.generator_calls = 0

    def discriminator_loss(self, real_scores, fake_scores):
        return (real_scores.mean() + fake_scores.mean()) * 0.0 + 0.001

    def generator_loss(self, fake_scores):
        self.generator_calls += 1
        return fake_scores.mean() * 0.0 + 0.5 * self.generator_calls


class CollapsePlugin:
    @gankit.hookimpl
    def gankit_register_losses(self, register):
        register("collapsing", CollapsingLoss, description="test loss: the discriminator wins outright")


def make_trainer(**changes) -> Trainer:
    registry = Registry(load_plugins(extra=[("collapse_test", CollapsePlugin())], entry_points=False))
    return Trainer(RunConfig.from_sources(overrides={**GUARD_RUN, **changes}), registry=registry)


def poison_generator_at(trainer: Trainer, step: int, times: int = 1) -> None:
    """After the log of ``step``, put a NaN in a generator weight (``times`` times at most)."""
    remaining = [times]

    def listener(event):
        if event.name == "log" and event.step == step and remaining[0] > 0:
            remaining[0] -= 1
            with torch.no_grad():
                next(trainer.generator.parameters()).view(-1)[0] = math.nan

    trainer.listeners.append(listener)


def rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def weights_are_finite(path) -> bool:
    tensors, _ = load_checkpoint(path)
    return not nonfinite_tensors((name, t) for name, t in tensors.items() if name.startswith(("generator.", "discriminator.")))


def test_nan_in_a_loss_stops_before_anything_bad_is_written(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer()
    poison_generator_at(trainer, 3)
    with pytest.raises(GankitError) as error:
        trainer.train(out)
    message = str(error.value)
    assert "diverged at step 4" in message and "nan" in message and "step-0000002" in message
    assert "--on-divergence rollback" in message
    assert [checkpoint_step(p) for p in list_checkpoints(out / "checkpoints")] == [2]
    assert all(weights_are_finite(p) for p in list_checkpoints(out / "checkpoints"))
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000002.png"]
    events = [row for row in rows(out) if "event" in row]
    assert events == [{"step": 4, "event": "divergence", "kind": "nonfinite", "detail": events[0]["detail"], "action": "stop"}]


def test_nan_in_the_weights_alone_is_caught_before_samples_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer()
    # Running statistics do not enter training-mode losses, so only the weight check can see this.
    running_var = next(buffer for name, buffer in trainer.generator.named_buffers() if name.endswith("running_var"))

    def listener(event):
        if event.name == "log" and event.step == 1:
            running_var.fill_(math.inf)

    trainer.listeners.append(listener)
    with pytest.raises(GankitError, match=r"step 2: NaN or Inf in the weights \(generator\..*running_var"):
        trainer.train(out)
    assert not list_checkpoints(out / "checkpoints")
    assert not (out / "samples").exists() or not any((out / "samples").iterdir())


def test_rollback_reloads_the_last_good_checkpoint_with_a_lower_learning_rate(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(on_divergence="rollback")
    poison_generator_at(trainer, 3)
    trainer.train(out)
    assert trainer.step == 8
    checkpoints = list_checkpoints(out / "checkpoints")
    assert [checkpoint_step(p) for p in checkpoints] == [0, 2, 4, 6, 8]
    assert all(weights_are_finite(p) for p in checkpoints)
    for optimizer in (trainer.optimizer_d, trainer.optimizer_g):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.5)
    _, metadata = load_checkpoint(checkpoints[-1])
    assert metadata["guard"]["rollbacks"] == 1
    logged = rows(out)
    events = [row for row in logged if "event" in row]
    assert len(events) == 1
    assert events[0]["action"] == "rollback" and events[0]["to_step"] == 2 and events[0]["step"] == 4
    # The abandoned steps' averages are gone; the replayed ones follow the event.
    assert [row["step"] for row in logged if "event" not in row] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(math.isfinite(row["d_loss"]) for row in logged if "event" not in row)


def test_rollback_gives_up_after_max_rollbacks(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(on_divergence="rollback", max_rollbacks=2)
    poison_generator_at(trainer, 3, times=10)
    with pytest.raises(GankitError, match="gave up after 2 rollbacks"):
        trainer.train(out)
    actions = [row["action"] for row in rows(out) if "event" in row]
    assert actions == ["rollback", "rollback", "stop"]
    assert all(weights_are_finite(p) for p in list_checkpoints(out / "checkpoints"))


def test_collapse_is_a_logged_warning_by_default(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(loss="collapsing", collapse_steps=3, collapse_d_loss=0.01)
    trainer.train(out)
    assert trainer.step == 8
    events = [row for row in rows(out) if "event" in row]
    assert [(row["step"], row["kind"], row["action"]) for row in events] == [(3, "collapse", "warn"), (6, "collapse", "warn")]
    assert "generator loss rose" in events[0]["detail"]


def test_a_collapse_warning_leaves_the_loggers_writing(tmp_path):
    # A warning has no step to return to: the loggers must not take it for a rollback (they raised KeyError).
    out = tmp_path / "run"
    trainer = make_trainer(loss="collapsing", collapse_steps=3, collapse_d_loss=0.01, logger=["csv"])
    trainer.train(out)
    assert [row["action"] for row in rows(out) if "event" in row] == ["warn", "warn"]
    assert (out / "metrics.csv").read_text().splitlines()[0] == "step,d_loss,g_loss,score_real,score_fake,img_per_s"
    assert [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]] == [
        str(step) for step in range(1, 9)
    ]


def test_collapse_rolls_back_to_before_it_began_when_asked(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(loss="collapsing", collapse_steps=3, on_divergence="rollback", max_rollbacks=1)
    with pytest.raises(GankitError, match="gave up after 1 rollbacks"):
        trainer.train(out)
    events = [row for row in rows(out) if "event" in row]
    assert events[0]["action"] == "rollback" and events[0]["to_step"] == 0  # the collapse began at step 0
    assert events[-1]["action"] == "stop"


def test_guard_reads_intervals_as_documented():
    config = RunConfig(collapse_steps=30, collapse_d_loss=0.05)
    guard = DivergenceGuard(config)
    assert guard.inspect_record(10, {"d_loss": 0.7, "g_loss": 1.0}, 10) is None
    assert guard.inspect_record(20, {"d_loss": 0.01, "g_loss": 2.0}, 10) is None  # a streak begins at 10
    assert guard.inspect_record(30, {"d_loss": 0.01, "g_loss": 3.0}, 10) is None
    found = guard.inspect_record(40, {"d_loss": -0.01, "g_loss": 4.0}, 10)
    assert found is not None and found.kind == "collapse" and found.since == 10
    # A discriminator that recovers ends the streak; a generator loss that falls is no collapse.
    guard = DivergenceGuard(config)
    for step, d_loss, g_loss in ((10, 0.01, 5.0), (20, 0.01, 4.0), (30, 0.01, 3.0), (40, 0.01, 2.0)):
        assert guard.inspect_record(step, {"d_loss": d_loss, "g_loss": g_loss}, 10) is None
    found = guard.inspect_record(10, {"d_loss": float("inf"), "g_loss": 1.0, "img_per_s": None}, 10)
    assert found.kind == "nonfinite" and "d_loss is inf" in found.detail
    assert nonfinite_tensors([("a", torch.ones(2)), ("b", torch.tensor([1.0, math.nan])), ("c", torch.arange(3))]) == ["b"]


def test_the_guard_decides_and_changes_nothing_but_its_own_count(tmp_path):
    """The loop acts on the guard's decision; the guard itself touches no trainer, checkpoint or file."""
    from gankit.divergence import Divergence

    nan = Divergence("nonfinite", "d_loss is nan")
    stop = DivergenceGuard(RunConfig.from_sources(overrides={"on_divergence": "stop"})).decide(
        7, nan, last_checkpoint=tmp_path / "step-0000006.safetensors"
    )
    assert stop.action == "stop" and stop.event.step == 7
    assert "training diverged at step 7: d_loss is nan" in stop.error and "step-0000006.safetensors" in stop.error

    guard = DivergenceGuard(RunConfig.from_sources(overrides={"on_divergence": "rollback", "max_rollbacks": 1}))
    guard.streak = (0, 1.0)
    collapse = Divergence("collapse", "the discriminator wins", since=4)
    rollback = guard.decide(9, collapse, last_checkpoint=None)
    assert (rollback.action, rollback.rollback_to, rollback.event.lr_factor, rollback.event.rollbacks) == ("rollback", 4, 0.5, 1)
    assert guard.rollbacks == 1 and guard.streak is None
    assert guard.decide(10, nan, last_checkpoint=None).action == "stop"  # max_rollbacks reached
    assert list(tmp_path.iterdir()) == []
