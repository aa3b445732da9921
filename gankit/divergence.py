"""The divergence guard: NaN or Inf in the losses or weights, and the discriminator winning outright.

Checks run where the engine already waits for the device: at each logged interval (the averaged losses)
and before anything is written (samples, checkpoints: the weights). Checking every step would add a host
sync per step; a NaN that appears mid-interval is caught at most ``log_every`` steps later, before any
file holds it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from gankit.components import Loss
from gankit.events import DivergenceDetected

# Record entries that are measurements of speed, not of the model.
_NOT_LOSSES = ("img_per_s",)


@dataclass
class Divergence:
    """What the guard found: ``kind`` is "nonfinite" (NaN/Inf) or "collapse"; ``since`` is where a collapse began."""

    kind: str
    detail: str
    since: int | None = None


@dataclass(frozen=True)
class Decision:
    """What the training loop does about a divergence: send ``event`` (its ``action`` is "warn", "stop" or
    "rollback"); on "stop" raise ``error``; on "rollback" reload the newest good checkpoint at or before step
    ``rollback_to`` (any when None), multiply the learning rates by ``event.lr_factor``, and raise ``error``
    when there is none."""

    event: DivergenceDetected
    error: str | None = None
    rollback_to: int | None = None

    @property
    def action(self) -> str:
        return self.event.action


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

    # -- decision --------------------------------------------------------------------------------

    def decide(self, step: int, problem: Divergence, *, last_checkpoint: Path | None) -> Decision:
        """What to do about ``problem`` found at ``step``: warn, stop (with the error to raise) or roll back.
        ``last_checkpoint`` is the newest checkpoint written, which the stop message names."""

        def event(action: str, **more) -> DivergenceDetected:
            return DivergenceDetected(step, kind=problem.kind, detail=problem.detail, action=action, **more)

        if problem.kind == "collapse" and self.action != "rollback":
            return Decision(event("warn", since=problem.since))
        keeps = "no checkpoint was written yet"
        if last_checkpoint is not None:
            keeps = f"the last good checkpoint is {last_checkpoint.name}"
        if self.action != "rollback":
            return Decision(event("stop"), error=(
                f"training diverged at step {step}: {problem.detail}; stopped before writing anything "
                f"({keeps}); --on-divergence rollback reloads it with a lower learning rate"
            ))
        if self.rollbacks >= self.max_rollbacks:
            return Decision(event("stop", rollbacks=self.rollbacks), error=(
                f"training diverged at step {step}: {problem.detail}; gave up after {self.rollbacks} rollbacks "
                f"(max-rollbacks), {keeps}"
            ))
        self.rollbacks += 1
        self.streak = None
        # A collapse began before its detection: go back to before it began when a checkpoint allows.
        return Decision(
            event("rollback", rollbacks=self.rollbacks, lr_factor=self.lr_factor), rollback_to=problem.since,
            error=f"training diverged at step {step}: {problem.detail}; no checkpoint to roll back to",
        )

    # -- checkpoint state ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "streak": list(self.streak) if self.streak else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = int(state.get("rollbacks", 0))
        streak = state.get("streak")
        self.streak = (int(streak[0]), float(streak[1])) if streak else None

