"""Generator EMA: an exponential moving average of the generator's weights, updated after each generator
step. Its samples are usually smoother and steadier than the raw generator's (Karras et al. 2018)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from gankit.errors import GankitError


class GeneratorEMA:
    """``module`` holds ``decay * module + (1 - decay) * generator`` after each :meth:`update`.

    Parameters are averaged; buffers (e.g. batch-norm running statistics) are copied, as they are already
    running averages. The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as
    TensorFlow's ExponentialMovingAverage with ``num_updates``): a plain 0.999 average would still hold 13% of
    the random initial weights after 2,000 steps, and averaging with those ruins a nonlinear network.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise GankitError(f"ema decay must be between 0 and 1 (e.g. 0.999), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        averaged = list(self.module.parameters())
        current = list(generator.parameters())
        torch._foreach_lerp_(averaged, current, 1.0 - self.current_decay())
        self.updates += 1
        for own, theirs in zip(self.module.buffers(), generator.buffers()):
            own.copy_(theirs)

    # Checkpoints hold ``module``'s weights under ``generator_ema.`` (TrainState.modules, gankit/state.py) and
    # this state (the update count, which sets the warm-up) under ``ema`` (TrainState.stateful).

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state.get("updates", 0))
