"""The divergence guard: NaN or Inf in the losses or weights, and the discriminator winning outright.

Checks run where the engine already waits for the device: at each logged interval (the averaged losses)
and before anything is written (samples, checkpoints: the weights). Checking every step would add a host
sync per step; a NaN that appears mid-interval is caught at most ``log_every`` steps later, before any
file holds it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from gankit.components import Loss
from gankit.errors import GankitError
from gankit.events import DivergenceDetected

if TYPE_CHECKING:  # pragma: no cover
    from gankit.engine import Trainer

# Record entries that are measurements of speed, not of the model.
_NOT_LOSSES = ("img_per_s",)


@dataclass
class Divergence:
    """What the guard found: ``kind`` is "nonfinite" (NaN/Inf) or "collapse"; ``since`` is where a collapse began."""

    kind: str
    detail: str
    since: int | None = None


def nonfinite_entries(record: dict[str, Any]) -> list[str]:
    """Names of the logged values that are NaN or infinite."""
    return [
        key for key, value in record.items()
        if key not in _NOT_LOSSES and isinstance(value, float) and not math.isfinite(value)
    ]


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of floating tensors holding a NaN or an Inf; one host sync for all of them."""
    floats = [(name, tensor) for name, tensor in named if tensor.is_floating_point() and tensor.numel()]
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(tensor).all().to("cpu") for _, tensor in floats]).tolist()
    return [name for (name, _), ok in zip(floats, finite) if not ok]


class DivergenceGuard:
    """Decides, from logged intervals and weight checks, whether a run diverged, and what to do about it.

    Collapse (the article's failure): the discriminator wins outright in every interval for at least
    ``collapse_steps`` steps while ``g_loss`` ends higher than it began. The loss's ``discriminator_wins``
    says what winning is (by default ``|d_loss| < collapse_d_loss``). It is a warning unless
    ``on_divergence = "rollback"``; NaN/Inf always acts: stop, or roll back.
    """

    def __init__(self, config, *, discriminator_wins: Callable[..., bool] | None = None) -> None:
        self.discriminator_wins = discriminator_wins or Loss().discriminator_wins
        self.action = config.on_divergence
        self.max_rollbacks = config.max_rollbacks
        self.lr_factor = config.rollback_lr_factor
        self.collapse_d_loss = config.collapse_d_loss
        self.collapse_steps = config.collapse_steps
        self.rollbacks = 0
        # The current run of intervals with the discriminator near zero: (first step, g_loss then).
        self.streak: tuple[int, float] | None = None

    # -- detection -------------------------------------------------------------------------------

    def inspect_record(self, step: int, record: dict[str, Any], interval_steps: int) -> Divergence | None:
        """Look at one logged interval ending at ``step``."""
        bad = nonfinite_entries(record)
        if bad:
            values = ", ".join(f"{key} is {record[key]}" for key in bad[:3])
            return Divergence("nonfinite", values)
        if self.collapse_steps <= 0 or "d_loss" not in record or "g_loss" not in record:
            return None
        g_loss = record["g_loss"]
        if not self.discriminator_wins(record, threshold=self.collapse_d_loss):
            self.streak = None
            return None
        if self.streak is None:
            self.streak = (step - interval_steps, g_loss)
            return None
        start, g_start = self.streak
        if step - start >= self.collapse_steps and g_loss > g_start:
            self.streak = None  # warn once per collapse_steps, not at every interval after
            return Divergence(
                "collapse",
                f"discriminator loss below {self.collapse_d_loss} for {step - start} steps while the generator "
                f"loss rose from {g_start:.4g} to {g_loss:.4g}",
                since=start,
            )
        return None

    def inspect_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> Divergence | None:
        bad = nonfinite_tensors(named)
        if bad:
            return Divergence("nonfinite", f"NaN or Inf in the weights ({', '.join(bad[:3])})")
        return None

    # -- reaction --------------------------------------------------------------------------------

    def handle(self, trainer: Trainer, problem: Divergence) -> bool:
        """Log the event, then warn (False), roll back (True) or stop (raises GankitError)."""
        from gankit.checkpoint import list_checkpoints
        from gankit.resume import rollback

        step = trainer.step

        def event(action: str, **more) -> DivergenceDetected:
            return DivergenceDetected(step, kind=problem.kind, detail=problem.detail, action=action, **more)

        if problem.kind == "collapse" and self.action != "rollback":
            trainer._emit(event("warn", since=problem.since))
            return False
        written = list_checkpoints(trainer.out / "checkpoints")
        keeps = f"the last good checkpoint is {written[-1].name}" if written else "no checkpoint was written yet"
        if self.action != "rollback":
            trainer._emit(event("stop"))
            raise GankitError(
                f"training diverged at step {step}: {problem.detail}; stopped before writing anything "
                f"({keeps}); --on-divergence rollback reloads it with a lower learning rate"
            )
        if self.rollbacks >= self.max_rollbacks:
            trainer._emit(event("stop", rollbacks=self.rollbacks))
            raise GankitError(
                f"training diverged at step {step}: {problem.detail}; gave up after {self.rollbacks} rollbacks "
                f"(max-rollbacks), {keeps}"
            )
        self.rollbacks += 1
        # A collapse began before its detection: go back to before it began when a checkpoint allows.
        target = rollback(
            trainer, at_or_before=problem.since, lr_factor=self.lr_factor,
            announce=event("rollback", rollbacks=self.rollbacks),
        )
        self.streak = None
        return target is not None

    # -- checkpoint state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "streak": list(self.streak) if self.streak else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state.get("rollbacks", 0))
        streak = state.get("streak")
        self.streak = (int(streak[0]), float(streak[1])) if streak else None

