"""The loss contract beyond formulas: real scores in the generator step for losses that ask for them, the
discriminator-step schedule and the collapse rule supplied by losses and regularizers (and the
--d-steps-boost* overrides), all through the documented methods a third-party plugin uses."""
from __future__ import annotations

import json

import pytest
import torch

import gankit
from gankit.components import BoostSchedule, Loss, Regularizer
from gankit.config import RunConfig
from gankit.divergence import DivergenceGuard
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry

pytestmark = pytest.mark.usefixtures("one_thread")


class OldStyleLoss(Loss):
    """A third-party loss written against the old contract: generator_loss(fake_scores) only."""

    def discriminator_loss(self, real_scores, fake_scores):
        return torch.nn.functional.softplus(fake_scores).mean() + torch.nn.functional.softplus(-real_scores).mean()

    def generator_loss(self, fake_scores):
        return torch.nn.functional.softplus(-fake_scores).mean()


class RecordingRelativisticLoss(OldStyleLoss):
    """Asks for real scores and keeps what it got, to compare with the discriminator the step used."""

    generator_needs_real_scores = True

    def __init__(self) -> None:
        self.seen = []

    def generator_loss(self, fake_scores, real_scores=None):
        self.seen.append(real_scores)
        return torch.nn.functional.softplus(real_scores - fake_scores).mean()


class AsksButCannotTake(OldStyleLoss):
    generator_needs_real_scores = True


class OddEvenLoss(OldStyleLoss):
    """A schedule that is no boost schedule: 3 discriminator updates before odd generator updates."""

    def discriminator_steps(self, step, base):
        return 3 if step % 2 else None


class ZeroStepsLoss(OldStyleLoss):
    def discriminator_steps(self, step, base):
        return 0


class NeverWinsLoss(OldStyleLoss):
    def discriminator_wins(self, record, *, threshold):
        return False


class TwoStepsRegularizer(Regularizer):
    boost_schedule = BoostSchedule(boost=2, warmup=1)


class ThirdParty:
    @gankit.hookimpl
    def gankit_register_losses(self, register):
        register("old-style", OldStyleLoss)
        register("recording", RecordingRelativisticLoss)
        register("asks-but-cannot-take", AsksButCannotTake)
        register("odd-even", OddEvenLoss)
        register("zero-steps", ZeroStepsLoss)
        register("never-wins", NeverWinsLoss)

    @gankit.hookimpl
    def gankit_register_regularizers(self, register):
        register("two-steps", TwoStepsRegularizer)


def make_trainer(tiny_run, **changes) -> Trainer:
    registry = Registry(load_plugins(extra=[("third_party", ThirdParty())], entry_points=False))
    return Trainer(RunConfig.from_sources(overrides={**tiny_run, **changes}), registry=registry)


def count_discriminator_calls(run: Trainer) -> list[int]:
    calls = []
    run.discriminator.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    return calls


# -- real scores in the generator step --------------------------------------------------------------------


def test_a_loss_with_the_old_generator_loss_signature_still_trains(tiny_run):
    run = make_trainer(tiny_run, loss="old-style", steps=2)
    calls = count_discriminator_calls(run)
    run.train_step(0)
    # D(real) and D(fake) in the discriminator update, D(fake) in the generator update: no extra pass.
    assert len(calls) == 3


def test_a_loss_that_asks_gets_the_current_discriminators_scores_on_the_last_real_batch(tiny_run):
    # Layer norm: a score depends on its own example only, so it can be recomputed exactly.
    run = make_trainer(tiny_run, loss="recording", arch="dcgan:width=8,norm=layer", d_steps=2, steps=2)
    batches = []
    next_batch = run.batches.next
    run.batches.next = lambda: (lambda batch: (batches.append(batch), batch)[1])(next_batch())
    calls = count_discriminator_calls(run)
    run.train_step(0)
    assert len(calls) == 2 * 2 + 2  # one extra forward pass, only for this loss
    (real_scores,) = run.loss.seen
    assert len(batches) == 2 and not real_scores.requires_grad
    # The last real batch, scored after the last discriminator update by the discriminator G trains against.
    with torch.no_grad():
        expected = run.discriminator(batches[-1])
    assert torch.allclose(real_scores, expected, atol=1e-6)


def test_real_scores_in_the_generator_step_change_the_generator_update(tiny_run):
    def generator_gradient(shift: float) -> torch.Tensor:
        run = make_trainer(tiny_run, loss="rpgan", arch="dcgan:width=8,norm=layer", steps=1)
        original = run.loss.generator_loss
        run.loss.generator_loss = lambda fake_scores, real_scores: original(fake_scores, real_scores=real_scores + shift)
        run.optimizer_g.step = lambda *args, **kwargs: None  # keep the gradient, skip the update
        run.train_step(0)
        return torch.cat([p.grad.flatten() for p in run.generator.parameters() if p.grad is not None])

    unshifted, shifted = generator_gradient(0.0), generator_gradient(5.0)
    assert unshifted.abs().sum() > 0
    assert not torch.allclose(unshifted, shifted)


def test_a_loss_that_asks_for_real_scores_but_cannot_take_them_is_refused_before_training(tiny_run):
    with pytest.raises(GankitError, match=r"'.*asks-but-cannot-take' sets generator_needs_real_scores.*real_scores"):
        make_trainer(tiny_run, loss="asks-but-cannot-take")


# -- the discriminator-step schedule ------------------------------------------------------------------------


def test_the_boost_schedule_counts_warmup_and_periodic_steps():
    schedule = BoostSchedule(boost=100, warmup=25, every=500)
    assert [schedule(step, 5) for step in (0, 24, 25, 499, 500, 501, 1000)] == [100, 100, 5, 5, 100, 5, 100]
    assert {BoostSchedule()(step, 3) for step in range(50)} == {3}


def test_a_loss_schedule_that_is_no_boost_schedule_reaches_the_engine(tiny_run):
    run = make_trainer(tiny_run, loss="odd-even", d_steps=2)
    assert [run.d_steps_at(step) for step in range(4)] == [2, 3, 2, 3]


def test_a_regularizer_schedule_outranks_the_loss_schedule(tiny_run):
    run = make_trainer(tiny_run, loss="odd-even", reg=["two-steps"], d_steps=1)
    assert [run.d_steps_at(step) for step in range(4)] == [2, 1, 1, 1]


def test_boost_flags_adjust_the_deciding_components_boost_schedule_field_by_field(tiny_run):
    run = make_trainer(tiny_run, loss="old-style", reg=["two-steps"], d_steps=1, d_steps_boost_every=2)
    assert [run.d_steps_at(step) for step in range(5)] == [2, 1, 2, 1, 2]  # boost 2 and warm-up 1 kept


def test_boost_flags_replace_a_schedule_that_is_no_boost_schedule(tiny_run):
    run = make_trainer(tiny_run, loss="odd-even", d_steps=2, d_steps_warmup=1, d_steps_boost=4)
    assert [run.d_steps_at(step) for step in range(4)] == [4, 2, 2, 2]


def test_a_schedule_returning_no_positive_int_is_a_clear_error(tiny_run):
    run = make_trainer(tiny_run, loss="zero-steps")
    with pytest.raises(GankitError, match=r"ZeroStepsLoss.discriminator_steps\(0, 1\) returned 0"):
        run.train_step(0)


def test_resolved_config_holds_no_boost_settings_unless_the_user_gave_them(tiny_run, tmp_path):
    run = make_trainer(tiny_run, loss="wasserstein", reg=["clip"])
    assert (run.config.d_steps_boost, run.config.d_steps_warmup, run.config.d_steps_boost_every) == (None,) * 3
    assert "# d_steps_warmup = (unset)" in run.config.to_toml()
    assert run.d_steps_at(0) == 100 and run.d_steps_at(25) == 5  # the loss's schedule


def test_an_old_runs_config_with_resolved_boost_settings_keeps_its_schedule(tiny_run, tmp_path):
    # Run folders written before the schedule moved into the loss hold the resolved values.
    config_file = tmp_path / "config.toml"
    config_file.write_text('loss = "wasserstein"\nreg = ["clip"]\nd_steps_boost = 100\nd_steps_warmup = 25\n'
                           'd_steps_boost_every = 500\n')
    config = RunConfig.from_sources(config_file, overrides=tiny_run)
    run = Trainer(config)
    assert [run.d_steps_at(step) for step in (0, 24, 25, 500)] == [100, 100, 5, 100]


# -- the collapse rule -------------------------------------------------------------------------------------


def collapse_found(discriminator_wins) -> bool:
    guard = DivergenceGuard(RunConfig(collapse_steps=20, collapse_d_loss=0.05), discriminator_wins=discriminator_wins)
    found = [guard.inspect_record(step, {"d_loss": 0.001, "g_loss": step / 10}, 10) for step in range(10, 60, 10)]
    return any(problem is not None and problem.kind == "collapse" for problem in found)


def test_the_default_collapse_rule_is_a_small_discriminator_loss():
    assert collapse_found(None)
    assert collapse_found(OldStyleLoss().discriminator_wins)


def test_a_loss_collapse_rule_replaces_the_default(tiny_run, tmp_path):
    assert not collapse_found(NeverWinsLoss().discriminator_wins)
    run = make_trainer(tiny_run, loss="never-wins")
    assert not collapse_found(run.guard.discriminator_wins)


# -- the third-party example of docs/plugins.md -----------------------------------------------------------


def documented_example(name: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    after = text.split(f"<!-- example: {name} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_documented_third_party_loss_trains_with_its_schedule_statistics_and_collapse_rule(tiny_run, tmp_path):
    import types

    plugin = types.ModuleType("gankit_ragan_plugin")
    exec(compile(documented_example("ragan"), "docs/plugins.md", "exec"), plugin.__dict__)
    registry = Registry(load_plugins(extra=[("ragan", plugin)], entry_points=False))
    run = Trainer(RunConfig.from_sources(overrides={**tiny_run, "loss": "ragan", "steps": 2}), registry=registry)
    assert [run.d_steps_at(step) for step in (0, 9, 10)] == [5, 5, 1]
    assert not run.guard.discriminator_wins({"d_loss": 0.5, "g_loss": 1.0}, threshold=0.01)
    out = run.train(tmp_path / "run")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("score_gap" in record for record in records)
