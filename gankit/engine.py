"""``Trainer(config).train(out)``: build a run, then train it. It knows the component interfaces, never a
component's name. The parts, one concept each:

    gankit/build.py   config + registry -> a Run (data, networks, loss and regularizers, optimizers, noise)
    gankit/step.py    the GAN update (train_step), readable top to bottom
    gankit/state.py   TrainState: what a checkpoint writes and what resume and rollback read back
    gankit/loop.py    when to log, evaluate, sample, checkpoint, roll back and stop
"""
from __future__ import annotations

from pathlib import Path

import torch

from gankit.build import Run, build_run, make_optimizer, resolve_device, seed_everything
from gankit.config import RunConfig
from gankit.events import Listener
from gankit.loop import TrainingLoop
from gankit.registry import Registry
from gankit.state import TrainState
from gankit.step import train_step

__all__ = ["Trainer", "make_optimizer", "resolve_device", "seed_everything"]


class Trainer:
    """A built :class:`~gankit.build.Run` and its :class:`~gankit.state.TrainState`, trained by :meth:`train`.

    For reading, the parts of the run are reachable by name: ``trainer.generator``, ``trainer.optimizer_d``,
    ``trainer.batches``, ``trainer.loss``, ``trainer.step`` (see :meth:`__getattr__`).
    """

    def __init__(self, config: RunConfig, *, registry: Registry | None = None, listeners: list[Listener] = ()) -> None:
        self.run = build_run(config, registry)
        self.state = TrainState(self.run)
        self.listeners: list[Listener] = list(listeners)
        self.resumed_from: Path | None = None  # the checkpoint a resumed run started from

    def restore(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
        """Continue from the checkpoint ``path`` (read as ``tensors`` and ``metadata``): see gankit/resume.py."""
        self.state.load_state_dict(tensors, metadata, source=path)
        self.resumed_from = path

    def train(self, out: str | Path, *, listeners: list[Listener] = ()) -> Path:
        """Train until ``config.steps`` generator updates, writing the run directory ``out``; returns it.
        ``listeners`` receive this training's events after the trainer's own.

        SIGINT/SIGTERM end the current step, write a checkpoint and raise ``TrainingInterrupted``.
        """
        loop = TrainingLoop(
            self.run, self.state, out, train_step=self.train_step, listeners=[*self.listeners, *listeners],
            resumed_from=self.resumed_from,
        )
        return loop.train()

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One generator update and its discriminator updates (gankit/step.py); detached statistics."""
        return train_step(self.run, step)

    def d_steps_at(self, step: int) -> int:
        """Discriminator updates before generator update number ``step`` (0-based): the loss's or regularizers'
        ``discriminator_steps``, adjusted by the ``--d-steps-boost*`` settings (gankit/schedule.py)."""
        return self.run.objective.schedule(step)

    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Samples from the generator (its EMA when on) in eval mode; ``labels``: the classes of a conditional run."""
        return self.run.networks.generate(noise, labels)

    def __getattr__(self, name: str):
        """Reads ``name`` from the parts of the run, then from the training state (``step``, ``guard``)."""
        if name.startswith("_") or name in ("run", "state"):
            raise AttributeError(name)
        run: Run = self.run
        for part in (run, run.data, run.objective, run.networks, run.optimizers, self.state):
            value = getattr(part, name, _MISSING)
            if value is not _MISSING:
                return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_MISSING = object()
