"""The training state: what a checkpoint holds and what resume and rollback restore, written and read side by
side so that the two cannot drift apart.

Everything that decides the next step is in it (weights, optimizer and loss-scaler states, the RNG states of
torch, CUDA and Python, the noise generator, the data order position, the partly accumulated logging
interval), so on CPU a run restored from a checkpoint continues bit for bit as if it had never stopped.
Weights are loaded into networks already built and never initialised again.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from gankit import __version__
from gankit.build import Run
from gankit.checkpoint import (
    DamagedCheckpoint,
    checkpoint_step,
    join_state,
    list_checkpoints,
    load_checkpoint,
    prefixed,
    require_finite,
    split_state,
    unprefixed,
)
from gankit.divergence import DivergenceGuard
from gankit.errors import GankitError
from gankit.inference import load_state

# What a checkpoint must hold to continue training from it (load_checkpoint checks the types).
RESUME_METADATA = ("states", "batches", "rng_python")
RNG_TENSORS = ("rng.torch", "rng.noise")
NETWORK_PREFIXES = ("generator", "discriminator", "generator_ema")


class TrainState:
    """The state of a :class:`~gankit.build.Run` as it trains: its step, the logging interval being
    accumulated (in checkpoints, so a resumed run logs the same averages), the divergence guard's history and
    the best checkpoint so far; :meth:`state_dict` and :meth:`load_state_dict` add the run's own stateful parts."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.step = 0
        self.interval_totals: dict[str, torch.Tensor] = {}
        self.interval_count = 0
        self.guard = DivergenceGuard(run.config, discriminator_wins=run.objective.loss.discriminator_wins)
        self.best: dict[str, Any] | None = None  # the best evaluated checkpoint when this state was loaded

    def add_step(self, stats: dict[str, torch.Tensor]) -> None:
        """Count one finished step and add its statistics to the interval (no host sync)."""
        totals = self.interval_totals
        for key, value in stats.items():
            totals[key] = totals[key] + value if key in totals else value.clone()
        self.interval_count += 1
        self.step += 1

    def take_interval(self) -> tuple[dict[str, torch.Tensor], int]:
        """The interval's totals and step count, and a fresh interval."""
        taken = self.interval_totals, self.interval_count
        self.interval_totals, self.interval_count = {}, 0
        return taken

    def modules(self) -> list[tuple[str, torch.nn.Module]]:
        """``(prefix, module)`` pairs whose ``state_dict()`` tensors a checkpoint holds and restoring loads strictly."""
        networks = self.run.networks
        modules = [("generator", networks.generator), ("discriminator", networks.discriminator)]
        if networks.ema is not None:
            modules.append(("generator_ema", networks.ema.module))
        return modules

    def named_weights(self) -> list[tuple[str, torch.Tensor]]:
        return [
            (f"{prefix}.{name}", tensor)
            for prefix, module in self.modules()
            for name, tensor in module.state_dict().items()
        ]

    def stateful(self) -> list[tuple[str, Any]]:
        """``(prefix, object)`` pairs with ``state_dict()``/``load_state_dict()`` of tensors and JSON values
        (optimizers, the EMA's count, loss scalers, the augmentations and their generator)."""
        optimizers, ema = self.run.optimizers, self.run.networks.ema
        states: list[tuple[str, Any]] = list(optimizers.named())
        if ema is not None:
            states.append(("ema", ema))
        for name, scaler in (("scaler_d", optimizers.scaler_d), ("scaler_g", optimizers.scaler_g)):
            if scaler is not None and hasattr(scaler, "state_dict"):
                states.append((name, scaler))
        if self.run.objective.augmentations is not None:
            states.append(("augment", self.run.objective.augmentations))
        return states

    # -- writing and reading, side by side -----------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, metadata)`` of a checkpoint: the tensors go in the safetensors body, the metadata
        (JSON) in its header. The checkpoint keeper adds ``best``."""
        run = self.run
        tensors = {
            "rng.torch": torch.get_rng_state(),
            "rng.noise": run.noise.get_state(),
            **prefixed("interval", self.interval_totals),
        }
        for prefix, module in self.modules():
            tensors.update(prefixed(prefix, module.state_dict()))
        states = {}
        for prefix, stateful in self.stateful():
            state_tensors, states[prefix] = split_state(prefix, stateful.state_dict())
            tensors.update(state_tensors)
        if torch.cuda.is_available():
            for index, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{index}"] = state
        metadata = {
            "gankit_version": __version__,
            "step": self.step,
            "shape": list(run.data.shape),
            "z_dim": run.config.z_dim,
            "config": run.config.as_dict(),
            "components": {key: _component_record(run, c) for key, c in run.components.items()},
            "states": states,
            "batches": run.data.batches.state_dict(),
            "rng_python": _python_rng_state(),
            "interval": {"count": self.interval_count},
            "guard": self.guard.state_dict(),
            "data_fingerprint": run.data.fingerprint,  # resume warns when the data changed since
        }
        if run.data.num_classes is not None:  # sample and eval rebuild the conditional generator from these
            metadata["num_classes"] = run.data.num_classes
            metadata["class_names"] = list(run.data.class_names)
        return tensors, metadata

    def load_state_dict(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, source: Path,
                        history: bool = True) -> None:
        """Put the run in the state a checkpoint recorded. ``history=False`` (a rollback) keeps this process's
        divergence count and best checkpoint, which are history of the run, not of the checkpoint."""
        try:
            for prefix, module in self.modules():
                load_state(module, unprefixed(prefix, tensors), f"the {prefix} in {source}")
            self._load_stateful(metadata["states"], tensors, source)
            _restore_random_states(tensors, metadata, self.run.noise)
            self.run.data.batches.load_state_dict(metadata["batches"])
            interval = metadata.get("interval") or {"count": 0}
            self.interval_totals = {
                key: tensor.to(self.run.device) for key, tensor in unprefixed("interval", tensors).items()
            }
            self.interval_count = int(interval["count"])
            if history:
                self.guard.load_state_dict(metadata.get("guard") or {})
                self.best = metadata.get("best")
            self.step = int(metadata["step"])
        except KeyError as error:
            raise GankitError(f"checkpoint {source} lacks {error.args[0]!r}; it cannot be resumed") from None

    def _load_stateful(self, documents: dict[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> None:
        for prefix, stateful in self.stateful():
            if prefix not in documents:
                raise GankitError(f"checkpoint {source} holds no {prefix} state")
            try:
                stateful.load_state_dict(join_state(documents[prefix], tensors))
            except GankitError:
                raise
            except Exception as error:  # torch raises ValueError/KeyError/RuntimeError for a mismatch
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise GankitError(f"checkpoint {source}: the {prefix} state does not fit this run ({first})") from None


def check_resumable(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Refuse (as DamagedCheckpoint, so that resume and rollback move on to an older one) a checkpoint that
    lacks what training continues from, or whose weights hold NaN or Inf."""
    missing = [key for key in RESUME_METADATA if key not in metadata] + [name for name in RNG_TENSORS if name not in tensors]
    if missing:
        raise DamagedCheckpoint(f"checkpoint {path} lacks {missing[0]!r}; it cannot be resumed")
    size = torch.get_rng_state().numel()
    for name in RNG_TENSORS:
        if tensors[name].dtype != torch.uint8 or tensors[name].numel() != size:
            raise DamagedCheckpoint(f"checkpoint {path} holds a damaged random state {name} (not {size} bytes)")
    require_finite(path, tensors, NETWORK_PREFIXES)


def find_rollback_checkpoint(folder: Path, *, at_or_before: int | None) -> tuple[Path, dict, dict] | None:
    """``(path, tensors, metadata)`` of the newest good checkpoint in ``folder`` at or before step ``at_or_before``
    (the oldest one when none is that old; the newest when it is None), or None when none can be restored."""
    found = list_checkpoints(folder)
    if at_or_before is not None:
        found = [p for p in found if checkpoint_step(p) <= at_or_before] or found[:1]
    for path in reversed(found):
        try:
            tensors, metadata = load_checkpoint(path)
            check_resumable(path, tensors, metadata)
            return path, tensors, metadata
        except DamagedCheckpoint:
            continue
    return None


def _component_record(run: Run, component) -> dict[str, str]:
    info = run.registry.plugins.infos.get(component.plugin)
    return {"name": component.name, "plugin": component.plugin, "version": info.version if info else "?"}


def _restore_random_states(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], noise: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    noise.set_state(tensors["rng.noise"])
    if torch.cuda.is_available():
        cuda_states = unprefixed("rng.cuda", tensors)
        for index in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[str(index)], index)
    version, state, gauss = metadata["rng_python"]
    random.setstate((version, tuple(state), gauss))


def _python_rng_state() -> list:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]
