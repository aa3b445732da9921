"""The run's augmentations (``--augment``), composed in the order given: what the training step applies to every
batch the discriminator sees, what they log, and the state checkpoints keep (their random generator included).

A run without ``--augment`` has none of this: no object, no call, no random draw (docs/augmentation.md).
"""
from __future__ import annotations

from typing import Any

import torch

from gankit.components import Augmentation
from gankit.distributed import Distributed
from gankit.errors import GankitError

# Offset of the augmentations' generator from the run's seed: the noise uses seed, the sample grids seed + 1 and
# the evaluations seed + 2, so that the four streams never coincide.
SEED_OFFSET = 3
STATISTICS_PREFIX = "augment"


class Augmentations:
    """The built augmentations and the ``torch.Generator`` they draw from.

    Every rank of a torchrun job seeds the generator alike and sees the scores of the whole global batch in
    :meth:`observe`, so an adaptive augmentation keeps the same strength on every rank (and in rank 0's checkpoint).
    """

    def __init__(self, augmentations: list[Augmentation], names: list[str], generator: torch.Generator,
                 distributed: Distributed) -> None:
        self.augmentations = augmentations
        self.names = names
        self.generator = generator
        self.distributed = distributed

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        for augmentation in self.augmentations:
            batch = augmentation(batch)
        return batch

    def observe(self, real_scores: torch.Tensor) -> None:
        """Show each augmentation the discriminator's (detached) scores on the augmented reals of every rank."""
        scores = _gathered(real_scores.detach().float(), self.distributed)
        for augmentation in self.augmentations:
            observe = getattr(augmentation, "observe", None)
            if observe is not None:
                observe(scores)

    def statistics(self, device: torch.device) -> dict[str, torch.Tensor]:
        """``augment_<key>`` for the first augmentation's statistics, ``augment<i>_<key>`` for the i-th after it."""
        found: dict[str, torch.Tensor] = {}
        for index, augmentation in enumerate(self.augmentations):
            statistics = getattr(augmentation, "statistics", None)
            prefix = STATISTICS_PREFIX if index == 0 else f"{STATISTICS_PREFIX}{index}"
            for key, value in (statistics() if statistics is not None else {}).items():
                found[f"{prefix}_{key}"] = torch.as_tensor(value, dtype=torch.float32, device=device).detach()
        return found

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "augmentations": [_state_of(augmentation) for augmentation in self.augmentations],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        states = state["augmentations"]
        if len(states) != len(self.augmentations):
            raise GankitError(
                f"the checkpoint holds {len(states)} augmentation states, the run has {len(self.augmentations)} "
                f"augmentations ({', '.join(self.names) or 'none'})"
            )
        self.generator.set_state(state["generator"])
        for augmentation, saved in zip(self.augmentations, states):
            load = getattr(augmentation, "load_state_dict", None)
            if load is not None:
                load(saved)


def build_augmentations(registry, specs: list[str], *, shape: tuple[int, ...], seed: int, device: torch.device,
                        distributed: Distributed) -> tuple[Augmentations | None, list]:
    """The run's augmentations and their ``Built`` records; ``(None, [])`` without ``--augment``."""
    if not specs:
        return None, []
    generator = torch.Generator(device=device).manual_seed(seed + SEED_OFFSET)
    built = [registry.build("augmentation", spec, shape=shape, generator=generator) for spec in specs]
    for record in built:
        if not isinstance(record.value, Augmentation):
            raise GankitError(
                f"augmentation {record.component.qualified_name!r} did not build a gankit.components.Augmentation"
            )
    names = [record.component.qualified_name for record in built]
    return Augmentations([record.value for record in built], names, generator, distributed), built


def _state_of(augmentation: Augmentation) -> Any:
    state_dict = getattr(augmentation, "state_dict", None)
    return state_dict() if state_dict is not None else {}


def _gathered(values: torch.Tensor, distributed: Distributed) -> torch.Tensor:
    """``values`` of every rank, concatenated in rank order (the values themselves in one process)."""
    if not distributed.enabled:
        return values
    import torch.distributed as dist

    gathered = [torch.empty_like(values) for _ in range(distributed.world_size)]
    dist.all_gather(gathered, values.contiguous())
    return torch.cat(gathered)
