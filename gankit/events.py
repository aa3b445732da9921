"""The events of a training run: what listeners (loggers, the progress display, the metrics log) receive.

Each event is a frozen dataclass with typed, documented fields, so a producer and a consumer cannot disagree
about a shape without a type checker or a test noticing. Every event has ``step`` (the generator updates done
when it happened) and ``name`` (a short stable string, handy in ``if event.name == "log"``). Dicts held by an
event (``values``, ``config``) are shared with every listener: read them, never change them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

__all__ = [
    "Event",
    "RunStarted",
    "StepLogged",
    "EvaluationDone",
    "SamplesWritten",
    "CheckpointWritten",
    "DivergenceDetected",
    "RunFinished",
    "Listener",
]


@dataclass(frozen=True)
class Event:
    """Base of every event. ``step``: the number of generator updates done when the event happened."""

    name: ClassVar[str] = "event"
    step: int

    @property
    def data(self):
        # Events used to be untyped dicts; a logger written for them gets a way forward, not a bare AttributeError.
        raise AttributeError(
            f"{type(self).__name__} events have no 'data' dict any more: read the event's attributes "
            "(each event type and its fields are listed in docs/hooks.md, 'Events')"
        )


@dataclass(frozen=True)
class RunStarted(Event):
    """Event name: ``start``. The run is about to train its first step (after a resume: the next step).

    ``step`` is 0 for a new run and the checkpoint's step for a resumed one; the steps after it are logged
    (again) from here on, so a logger that writes files drops what it had logged after ``step``.
    """

    name: ClassVar[str] = "start"
    total_steps: int  #: the step the run ends at (``--steps``)
    out: Path  #: the run folder
    device: str  #: the device the networks train on, e.g. ``cpu`` or ``cuda:0``
    config: dict[str, Any]  #: the resolved settings, as in the run's ``config.toml``
    resumed_from: Path | None = None  #: the checkpoint a resumed run continues from; None for a new run

    @property
    def resumed(self) -> bool:
        return self.resumed_from is not None


@dataclass(frozen=True)
class StepLogged(Event):
    """Event name: ``log``. A logging interval ended at ``step`` (every ``log_every`` steps and at checkpoints)."""

    name: ClassVar[str] = "log"
    #: Averages over the interval, rounded to 6 decimals: ``d_loss``, ``g_loss``, ``score_real``, ``score_fake``
    #: and whatever the loss's ``statistics()`` adds (e.g. ``d_x``, ``wasserstein``).
    values: dict[str, float]
    images_per_second: float | None  #: real images the discriminator saw per second in the interval (wall time)
    interval_steps: int  #: the steps the averages cover


@dataclass(frozen=True)
class EvaluationDone(Event):
    """Event name: ``eval``. The metric of ``--eval-every`` scored the generator after ``step``."""

    name: ClassVar[str] = "eval"
    metric: str  #: the metric's resolved spec, e.g. ``modes`` or ``swd:directions=128``
    values: dict[str, float]  #: every value the metric returned, e.g. ``{"modes": 8.0, "hq": 0.9, "kl": 0.01}``
    key: str  #: the headline value's name in ``values`` (by which ``best.safetensors`` is chosen)
    higher_is_better: bool  #: the headline's direction


@dataclass(frozen=True)
class SamplesWritten(Event):
    """Event name: ``sample``. The samples of the fixed noise were written."""

    name: ClassVar[str] = "sample"
    #: A PNG: the grid of images, or for 2-D data a scatter plot (the raw samples beside it as ``.npy``); other
    #: vector data: the ``.npy`` file.
    path: Path


@dataclass(frozen=True)
class CheckpointWritten(Event):
    """Event name: ``checkpoint``. A checkpoint of ``step`` was written (atomically)."""

    name: ClassVar[str] = "checkpoint"
    path: Path  #: the checkpoint file, ``<run>/checkpoints/step-NNNNNNN.safetensors``


@dataclass(frozen=True)
class DivergenceDetected(Event):
    """Event name: ``divergence``. The divergence guard found NaN/Inf or a collapse at ``step``.

    ``action`` says what the run does: ``warn`` (a collapse, training goes on), ``rollback`` (the weights go
    back to the checkpoint of ``to_step``; the steps after it are logged again, so a logger that writes files
    drops what it had logged after ``to_step``) or ``stop`` (the run ends with an error).
    """

    name: ClassVar[str] = "divergence"
    kind: Literal["nonfinite", "collapse"]  #: NaN/Inf in the losses or weights, or the discriminator winning
    detail: str  #: one line for people, e.g. ``d_loss is nan``
    action: Literal["warn", "rollback", "stop"]
    since: int | None = None  #: a collapse: the step where it began
    rollbacks: int | None = None  #: rollbacks so far (``rollback``, and ``stop`` after the last allowed one)
    to_step: int | None = None  #: ``rollback``: the step of the checkpoint the run returns to
    lr_factor: float | None = None  #: ``rollback``: the factor the learning rates are multiplied by

    def details(self) -> dict[str, Any]:
        """The fields after ``step`` that are set, in declaration order (the row ``metrics.jsonl`` holds)."""
        named = ((field.name, getattr(self, field.name)) for field in fields(self) if field.name != "step")
        return {key: value for key, value in named if value is not None}


@dataclass(frozen=True)
class RunFinished(Event):
    """Event name: ``end``. The run trained its last step; its checkpoint and samples are written."""

    name: ClassVar[str] = "end"
    out: Path  #: the run folder


Listener = Callable[[Event], None]
