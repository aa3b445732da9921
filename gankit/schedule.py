"""How many discriminator updates each generator update gets: the loss's and regularizers' answer
(``discriminator_steps``), adjusted by the ``--d-steps-boost*`` settings when the user gave them."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from gankit.components import BoostSchedule, TrainingPolicy
from gankit.errors import GankitError

# Run settings that override a component's boost schedule, by BoostSchedule field.
BOOST_SETTINGS = {"d_steps_boost": "boost", "d_steps_warmup": "warmup", "d_steps_boost_every": "every"}


class DiscriminatorSchedule:
    """``schedule(step)``: discriminator updates before generator update ``step`` (0-based)."""

    def __init__(self, config, *, loss: TrainingPolicy, regularizers: Sequence[TrainingPolicy]) -> None:
        self.base = config.d_steps
        # Regularizers outrank the loss (as their recommendations do), and a later one an earlier one:
        # --loss wasserstein --reg gp is WGAN-GP, without the WGAN boosts.
        self.deciders: list[TrainingPolicy] = [*reversed(regularizers), loss]
        overrides = {field: getattr(config, key) for key, field in BOOST_SETTINGS.items() if getattr(config, key) is not None}
        if overrides:
            adjusted = next((d.boost_schedule for d in self.deciders if d.boost_schedule is not None), BoostSchedule())
            self.deciders = [OverriddenSchedule(dataclasses.replace(adjusted, **overrides))]

    def __call__(self, step: int) -> int:
        for decider in self.deciders:
            answer = decider.discriminator_steps(step, self.base)
            if answer is None:
                continue
            if isinstance(answer, bool) or not isinstance(answer, int) or answer < 1:
                raise GankitError(
                    f"{type(decider).__name__}.discriminator_steps({step}, {self.base}) returned {answer!r}; "
                    "it must return a positive int, or None to leave the decision to others"
                )
            return answer
        return self.base


class OverriddenSchedule(TrainingPolicy):
    """The components' boost schedule with the fields the user set replaced."""

    def __init__(self, schedule: BoostSchedule) -> None:
        self.boost_schedule = schedule
