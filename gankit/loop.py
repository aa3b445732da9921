"""The training loop: it runs the step until the run's last one and decides when to log, check for divergence
(and act on the guard's decision), evaluate, write samples and checkpoints, and stop on a signal.

Rank 0 alone writes the run folder and sends events (the weights are the same on every rank).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from gankit.build import Run
from gankit.conditioning import GRID_COLUMNS, grid_inputs
from gankit.checkpoint import CheckpointKeeper, list_checkpoints, remove_partial_writes, write_atomic
from gankit.config import RunConfig
from gankit.divergence import Divergence, Decision, nonfinite_tensors
from gankit.errors import GankitError
from gankit.evaluation import close_loggers, open_loggers
from gankit.events import CheckpointWritten, Event, Listener, RunFinished, RunStarted, SamplesWritten, StepLogged
from gankit.metrics_log import METRICS_LOG, MetricsLog, truncate_metrics
from gankit.plots import write_run_outputs, write_vector_samples
from gankit.samples import save_grid
from gankit.signals import StopRequest, TrainingInterrupted
from gankit.state import TrainState, find_rollback_checkpoint

VECTOR_SAMPLE_COUNT = 1000  # points per sample plot of vector (e.g. 2-D) data


class TrainingLoop:
    """Trains ``run`` from ``state`` up to ``config.steps`` generator updates, writing the run folder ``out``."""

    def __init__(self, run: Run, state: TrainState, out: str | Path, *, train_step: Callable[[int], dict],
                 listeners: Iterable[Listener] = (), resumed_from: Path | None = None) -> None:
        self.run, self.state, self.out = run, state, Path(out)
        self.train_step = train_step
        self.resumed_from = resumed_from
        config = run.config
        self.keeper = CheckpointKeeper(
            self.out / "checkpoints", keep=config.keep_checkpoints, metric=config.best_metric, mode=config.best_mode
        )
        self.keeper.load_state_dict({"best": state.best})
        self.listeners: list[Listener] = [MetricsLog(self.out / METRICS_LOG), *listeners, self.keeper]
        self.stop_request = StopRequest()
        self._images = 0  # images the discriminator saw in the logging interval
        self._interval_start = 0.0

    def train(self) -> Path:
        """Train; SIGINT/SIGTERM end the current step, write a checkpoint and raise ``TrainingInterrupted``."""
        with self.stop_request:
            loggers = open_loggers(self.run.registry, self.run.config.logger, self.out)
            self.listeners.extend(logger.handle for logger in loggers)
            try:
                return self._train()
            finally:
                close_loggers(loggers)
                # Also after an interruption or an error: the loss plot and GIF of what was trained so far.
                if self.out.is_dir() and self.run.distributed.is_main:
                    write_run_outputs(self.out)

    def _train(self) -> Path:
        run, state, config = self.run, self.state, self.run.config
        if run.distributed.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / "config.toml", config.to_toml())  # a kill must not cut it: resume reads it
        self._prepare_checkpoints()
        self.emit(RunStarted(
            state.step, total_steps=config.steps, out=self.out, device=str(run.device), config=config.as_dict(),
            resumed_from=self.resumed_from,
        ))
        self._interval_start, self._images = time.perf_counter(), 0
        while state.step < config.steps:
            self._images += config.batch_size * run.distributed.world_size * run.objective.schedule(state.step)
            apply_lr_decay(run, state.step)
            state.add_step(self.train_step(state.step))
            self._after_step()
        self.emit(RunFinished(state.step, out=self.out))
        return self.out

    def _after_step(self) -> None:
        config, distributed, step = self.run.config, self.run.distributed, self.state.step
        last = step == config.steps
        evaluate = self.run.evaluator is not None and (step % config.eval_every == 0 or last)
        # An evaluation step writes a checkpoint too, so that the best one can be kept.
        checkpoint_due = step % config.checkpoint_every == 0 or last or evaluate
        logged = step % config.log_every == 0 or checkpoint_due
        if logged and self._log_interval():
            return  # rolled back to a checkpoint: nothing of this step is written
        if (step % config.sample_every == 0 or checkpoint_due) and self._guard_weights():
            return
        if distributed.is_main and evaluate:
            self.emit(self.run.evaluator.evaluate(self.run.networks.sampling_generator, step=step, out=self.out))
        if distributed.is_main and (step % config.sample_every == 0 or last):
            self.emit(SamplesWritten(step, path=write_samples(self.run, self.out / "samples" / f"step-{step:07d}.png")))
        if distributed.is_main and checkpoint_due:
            self.emit(CheckpointWritten(step, path=self.write_checkpoint()))
        # Under torchrun every rank must stop at the same step, or the others wait in a collective forever. The
        # vote is a collective and a host sync, so ranks take it at logged steps (where they sync anyway); a
        # single process checks every step at no cost.
        vote_due = logged or not distributed.enabled
        if vote_due and distributed.any_rank(self.stop_request.requested, self.run.device):
            self._stop_on_signal(checkpoint_written=checkpoint_due)

    def _log_interval(self) -> bool:
        """Send the interval's averages and check them; True when the run was rolled back."""
        elapsed = time.perf_counter() - self._interval_start
        totals, count = self.state.take_interval()
        # One host sync per logged interval, not per step; every rank logs the mean over the ranks.
        totals = self.run.distributed.mean_across_ranks(totals)
        values = {key: round(float(value) / count, 6) for key, value in totals.items()}
        self.emit(StepLogged(
            self.state.step, values=values, interval_steps=count,
            images_per_second=round(self._images / elapsed, 2) if elapsed > 0 else None,
        ))
        self._images, self._interval_start = 0, time.perf_counter()
        problem = self.state.guard.inspect_record(self.state.step, values, count)
        return problem is not None and self._act_on(problem)

    def _guard_weights(self) -> bool:
        """Check the weights before anything is written from them; True when the run was rolled back."""
        problem = self.state.guard.inspect_weights(self.state.named_weights())
        return problem is not None and self._act_on(problem)

    # -- acting on the divergence guard's decision (docs/reliability.md) ------------------------------

    def _act_on(self, problem: Divergence) -> bool:
        """Warn (False), roll back (True) or stop (raises GankitError), as the guard decides."""
        written = list_checkpoints(self.out / "checkpoints")
        decision = self.state.guard.decide(self.state.step, problem, last_checkpoint=written[-1] if written else None)
        if decision.action == "warn":
            self.emit(decision.event)
            return False
        if decision.action == "stop":
            self.emit(decision.event)
            raise GankitError(decision.error)
        self._roll_back(decision)
        return True

    def _roll_back(self, decision: Decision) -> None:
        """Reload the newest good checkpoint the decision allows, lower the learning rates, and drop the metrics
        logged after that checkpoint (events stay)."""
        found = find_rollback_checkpoint(self.out / "checkpoints", at_or_before=decision.rollback_to)
        if found is None:
            raise GankitError(decision.error)
        path, tensors, metadata = found
        self.emit(dataclasses.replace(decision.event, to_step=metadata["step"]))
        self.state.load_state_dict(tensors, metadata, source=path, history=False)
        self.run.optimizers.scale_learning_rates(decision.event.lr_factor)
        if self.run.distributed.is_main:
            truncate_metrics(self.out / METRICS_LOG, self.state.step, keep_events=True)

    # -- checkpoints and signals ---------------------------------------------------------------------

    def write_checkpoint(self) -> Path:
        """Write this step's checkpoint (atomically), keeping the newest ``keep_checkpoints`` and the best."""
        tensors, metadata = self.state.state_dict()
        return self.keeper.write(self.state.step, tensors, metadata)

    def _prepare_checkpoints(self) -> None:
        if self.run.distributed.is_main:
            remove_partial_writes(self.keeper.folder)
            # A rollback needs somewhere to go back to, even before the first regular checkpoint.
            if self.run.config.on_divergence == "rollback" and not list_checkpoints(self.keeper.folder):
                self.write_checkpoint()

    def _stop_on_signal(self, *, checkpoint_written: bool) -> None:
        path = None
        if checkpoint_written:
            path = list_checkpoints(self.keeper.folder)[-1]
        elif self.run.distributed.is_main and not nonfinite_tensors(self.state.named_weights()):
            path = self.write_checkpoint()
            self.emit(CheckpointWritten(self.state.step, path=path))
        else:  # weights gone bad since the last check: never checkpoint them; point at the last good one
            found = list_checkpoints(self.keeper.folder)
            path = found[-1] if found else None
        signal_name = self.stop_request.requested or "a signal to another rank"
        raise TrainingInterrupted(signal_name, self.state.step, path, self.out, total=self.run.config.steps)

    def emit(self, event: Event) -> None:
        if not self.run.distributed.is_main:
            return  # listeners (metrics log, progress display) run on rank 0 only
        for listener in self.listeners:
            listener(event)


def write_samples(run: Run, path: Path) -> Path:
    """The sample grid of the fixed noise; for vector data more points than a grid holds, from noise fixed by
    the seed: .npy, and a scatter PNG in 2-D. A conditional run's grid has one row per class, column j from the
    same noise in every row; its vector samples take the classes in turn and are coloured by class."""
    num_classes = run.data.num_classes
    noise, labels = (run.fixed_noise, None) if num_classes is None else grid_inputs(run.fixed_noise, num_classes)
    samples = run.networks.generate(noise, labels)
    if samples.dim() == 4:
        return save_grid(samples, path, nrow=GRID_COLUMNS)
    fixed = torch.Generator().manual_seed(run.config.seed + 1)
    noise = torch.randn(VECTOR_SAMPLE_COUNT, run.config.z_dim, generator=fixed).to(run.device)
    labels = None if num_classes is None else torch.arange(VECTOR_SAMPLE_COUNT, device=run.device) % num_classes
    data = run.data.batches.data
    reference = data[:VECTOR_SAMPLE_COUNT].cpu() if data is not None else None
    return write_vector_samples(
        run.networks.generate(noise, labels), path, reference=reference,
        classes=None if labels is None else labels.cpu(),
    )


def lr_factor(config: RunConfig, step: int) -> float:
    """The learning-rate factor of update ``step`` (0-based): 1, then linearly towards 0 over the last
    ``lr_decay`` fraction of the run (the last update gets ``1 / decay_steps``, never 0)."""
    decay_steps = round(config.lr_decay * config.steps)
    if decay_steps <= 0 or step < 0:
        return 1.0
    return min(1.0, (config.steps - step) / decay_steps)


def apply_lr_decay(run: Run, step: int) -> None:
    # Scaled by the ratio to the previous step's factor, not set from the configured rate: rollbacks lower the
    # rates too, and a resumed optimizer's state already holds the rate decayed up to its step.
    ratio = lr_factor(run.config, step) / lr_factor(run.config, step - 1)
    if ratio != 1.0:
        run.optimizers.scale_learning_rates(ratio)
