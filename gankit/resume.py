"""Continuing a run: rebuild its Trainer from the run's own config, then restore the newest loadable checkpoint.

Everything that decides the next step is restored (weights, optimizer and loss-scaler states, the RNG
states of torch, CUDA and Python, the noise generator, the data order position, the partly accumulated
logging interval), so on CPU a resumed run continues bit for bit as if it had never stopped. Weights are
loaded after the networks are built and never initialised again.
"""
from __future__ import annotations

import dataclasses
import json
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from gankit.checkpoint import (
    DamagedCheckpoint,
    checkpoint_step,
    join_state,
    list_checkpoints,
    load_checkpoint,
    newest_loadable_checkpoint,
    remove_partial_writes,
    unprefixed,
    write_atomic,
)
from gankit.config import RunConfig
from gankit.errors import GankitError, GankitWarning
from gankit.events import DivergenceDetected
from gankit.evaluation import EVAL_LOG
from gankit.inference import load_state

if TYPE_CHECKING:  # pragma: no cover
    from gankit.engine import Trainer

# Config keys ``--resume`` may change: they do not alter what the next step computes.
RESUME_OVERRIDABLE = ("steps", "on_divergence", "keep_checkpoints")


def _warn(message: str) -> None:
    warnings.warn(message, GankitWarning, stacklevel=3)


def read_run_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run's saved config.toml with ``overrides``; every key counts as user-set, so recommendations
    of the components cannot change a resumed run."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise GankitError(f"--resume {run_dir}: no such folder")
    if not run_dir.is_dir():
        raise GankitError(f"--resume {run_dir}: not a folder (give the run directory)")
    file = run_dir / "config.toml"
    if not file.is_file():
        raise GankitError(f"--resume {run_dir}: not a run directory (it has no config.toml)")
    refused = sorted(key for key, value in (overrides or {}).items() if value is not None and key not in RESUME_OVERRIDABLE)
    if refused:
        allowed = ", ".join("--" + key.replace("_", "-") for key in RESUME_OVERRIDABLE)
        raise GankitError(
            f"--resume continues a run with its own config; {', '.join('--' + k.replace('_', '-') for k in refused)} "
            f"cannot be changed (only {allowed})"
        )
    config = RunConfig.from_sources(file, overrides)
    config.user_set = set(RunConfig.keys())
    config.out = str(run_dir)
    return config


def resume_trainer(
    run_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    registry=None,
    listeners=(),
    warn: Callable[[str], None] | None = None,
) -> Trainer:
    """A Trainer positioned exactly where the run's newest loadable checkpoint left it; call ``train(run_dir)``."""
    from gankit.engine import Trainer

    run_dir = Path(run_dir)
    warn = warn or _warn
    config = read_run_config(run_dir, overrides)
    path, tensors, metadata = newest_loadable_checkpoint(run_dir, warn)
    step = metadata["step"]
    if config.steps <= step:
        if overrides and overrides.get("steps") is not None:
            raise GankitError(f"--steps {config.steps}: {run_dir} is already at step {step}; give a larger total")
        raise GankitError(f"{run_dir} already finished at step {step}; pass --steps N (N > {step}) to train it further")
    trainer = Trainer(config, registry=registry, listeners=listeners)
    restore_trainer(trainer, tensors, metadata, source=path)
    if trainer.distributed.is_main:  # under torchrun, rank 0 alone writes the run directory
        for log in ("metrics.jsonl", EVAL_LOG):  # the resumed run logs the steps after the checkpoint again
            truncate_metrics(run_dir / log, step, keep_events=False)
        remove_partial_writes(run_dir / "checkpoints")
    trainer.resumed_from = path
    return trainer


def restore_trainer(trainer: Trainer, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, source) -> None:
    """Put a freshly built Trainer in the state a checkpoint recorded."""
    try:
        for prefix, module in trainer.checkpoint_modules():
            load_state(module, unprefixed(prefix, tensors), f"the {prefix} in {source}")
        documents = metadata["states"]
        for prefix, stateful in trainer.checkpoint_states():
            if prefix not in documents:
                raise GankitError(f"checkpoint {source} holds no {prefix} state")
            try:
                stateful.load_state_dict(join_state(documents[prefix], tensors))
            except GankitError:
                raise
            except Exception as error:  # torch raises ValueError/KeyError/RuntimeError for a mismatch
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise GankitError(f"checkpoint {source}: the {prefix} state does not fit this run ({first})") from None
        _restore_random_states(tensors, metadata, trainer)
        trainer.batches.load_state_dict(metadata["batches"])
        interval = metadata.get("interval") or {"count": 0}
        trainer.interval_totals = {
            key: tensor.to(trainer.device) for key, tensor in unprefixed("interval", tensors).items()
        }
        trainer.interval_count = int(interval["count"])
        trainer.guard.load_state_dict(metadata.get("guard") or {})
        trainer.keeper.load_state_dict({"best": metadata.get("best")})
        trainer.step = int(metadata["step"])
    except KeyError as error:
        raise GankitError(f"checkpoint {source} lacks {error.args[0]!r}; it cannot be resumed") from None


def _restore_random_states(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], trainer: Trainer) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    trainer.noise.set_state(tensors["rng.noise"])
    if torch.cuda.is_available():
        cuda_states = unprefixed("rng.cuda", tensors)
        for index in range(min(len(cuda_states), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda_states[str(index)], index)
    version, state, gauss = metadata["rng_python"]
    random.setstate((version, tuple(state), gauss))


def rollback(
    trainer: Trainer, *, at_or_before: int | None, lr_factor: float, announce: DivergenceDetected
) -> Path:
    """Reload the newest good checkpoint (at or before step ``at_or_before`` when one is), scale the learning
    rates by ``lr_factor`` and send ``announce`` with where it went; the metrics logged after that checkpoint
    are dropped (events stay)."""
    folder = trainer.out / "checkpoints"
    found = list_checkpoints(folder)
    if at_or_before is not None:
        found = [p for p in found if checkpoint_step(p) <= at_or_before] or found[:1]
    for path in reversed(found):
        try:
            tensors, metadata = load_checkpoint(path)
            break
        except DamagedCheckpoint:
            continue
    else:
        raise GankitError(f"training diverged at step {trainer.step}: {announce.detail}; no checkpoint to roll back to")
    # The guard's count and the best metric are history of this process, not of the checkpoint.
    rollbacks, best = trainer.guard.rollbacks, trainer.keeper.best
    trainer._emit(dataclasses.replace(announce, to_step=metadata["step"], lr_factor=lr_factor))
    restore_trainer(trainer, tensors, metadata, source=path)
    trainer.guard.rollbacks, trainer.keeper.best = rollbacks, best
    for _, optimizer in trainer.checkpoint_optimizers():
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * lr_factor
    if trainer.distributed.is_main:
        truncate_metrics(trainer.out / "metrics.jsonl", trainer.step, keep_events=True)
    return path


def truncate_metrics(path: str | Path, step: int, *, keep_events: bool) -> None:
    """Drop the metrics rows logged after ``step`` (and a last line cut short by a kill), atomically."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict):
            continue
        if row.get("step", 0) <= step or (keep_events and "event" in row):
            kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))
