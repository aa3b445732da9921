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
    require_finite,
    unprefixed,
    write_atomic,
)
from gankit.config import RunConfig, read_toml
from gankit.errors import GankitError, GankitWarning
from gankit.events import DivergenceDetected
from gankit.evaluation import EVAL_LOG
from gankit.inference import load_state
from gankit.registry import default_registry

if TYPE_CHECKING:  # pragma: no cover
    from gankit.engine import Trainer

# Config keys ``--resume`` may change: they do not alter what the next step computes.
RESUME_OVERRIDABLE = ("steps", "on_divergence", "keep_checkpoints")

# What a checkpoint must hold to continue training from it (load_checkpoint checks the types).
RESUME_METADATA = ("states", "batches", "rng_python")
RNG_TENSORS = ("rng.torch", "rng.noise")
NETWORK_PREFIXES = ("generator", "discriminator", "generator_ema")


def _warn(message: str) -> None:
    warnings.warn(message, GankitWarning, stacklevel=3)


def check_run_folder(run_dir: str | Path) -> Path:
    """``run_dir`` as a folder that holds a run (a config.toml or checkpoints), or a one-line error."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise GankitError(f"--resume {run_dir}: no such folder")
    if not run_dir.is_dir():
        raise GankitError(f"--resume {run_dir}: not a folder (give the run directory)")
    if not (run_dir / "config.toml").is_file() and not (run_dir / "checkpoints").is_dir():
        raise GankitError(f"--resume {run_dir}: not a run directory (it has neither config.toml nor checkpoints/)")
    return run_dir


def _refuse_overrides(overrides: Mapping[str, Any] | None) -> None:
    refused = sorted(key for key, value in (overrides or {}).items() if value is not None and key not in RESUME_OVERRIDABLE)
    if refused:
        raise GankitError(
            f"--resume continues a run with its own config; {', '.join('--' + k.replace('_', '-') for k in refused)} "
            f"cannot be changed (only {_allowed_flags()})"
        )


def _allowed_flags() -> str:
    return ", ".join("--" + key.replace("_", "-") for key in RESUME_OVERRIDABLE)


def _as_resumed(config: RunConfig, run_dir: Path) -> RunConfig:
    # Every key counts as user-set, so recommendations of the components cannot change a resumed run.
    config.user_set = set(RunConfig.keys())
    config.resolved = True
    config.out = str(run_dir)
    return config


def read_run_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run's saved config.toml with ``overrides`` (what a user reads and edits; resume trains with
    the checkpoint's own config, see :func:`resume_config`)."""
    run_dir = check_run_folder(run_dir)
    file = run_dir / "config.toml"
    if not file.is_file():
        raise GankitError(f"--resume {run_dir}: not a run directory (it has no config.toml)")
    _refuse_overrides(overrides)
    return _as_resumed(RunConfig.from_sources(file, overrides), run_dir)


def resume_config(
    run_dir: Path, metadata: dict[str, Any], *, source: Path, overrides: Mapping[str, Any] | None, warn: Callable[[str], None]
) -> RunConfig:
    """The config a resumed run trains with: the one saved in its checkpoint, which is what the weights and
    optimizer states were trained with. An edit of config.toml is taken only for the keys ``--resume``
    accepts as flags (said in one line); any other edit is refused, since it would be recorded but not used.
    A missing config.toml is no obstacle: it is written again from the checkpoint's config."""
    saved = metadata.get("config")
    if not isinstance(saved, dict):
        raise GankitError(f"checkpoint {source} holds no config; it cannot be resumed")
    config = RunConfig()
    config.update(saved, source=f"checkpoint {source}")
    file = run_dir / "config.toml"
    if file.is_file():
        edited = RunConfig()
        edited.update(read_toml(file), source=str(file))
        flagged = {key for key, value in (overrides or {}).items() if value is not None}
        _take_allowed_edits(config, edited, file=file, source=source, warn=warn, flagged=flagged)
    else:
        warn(f"{run_dir} has no config.toml; resuming with the config saved in {source.name} (config.toml is written again)")
    if overrides:
        config.update({k: v for k, v in overrides.items() if v is not None}, source="flags")
    config.validate()
    return _as_resumed(config, run_dir)


def _take_allowed_edits(config: RunConfig, edited: RunConfig, *, file: Path, source: Path, warn, flagged: set[str]) -> None:
    # ``out`` is where the run lives now, not a setting: a moved run folder is not an edit. A key given as a
    # flag is decided by the flag.
    changed = [
        key for key in RunConfig.keys()
        if key != "out" and key not in flagged and getattr(edited, key) != getattr(config, key)
    ]
    refused = [key for key in changed if key not in RESUME_OVERRIDABLE]
    if refused:
        key = refused[0]
        raise GankitError(
            f"{file} was edited: {key} = {_short(getattr(edited, key))} there, {_short(getattr(config, key))} in "
            f"{source.name}{f' (and {len(refused) - 1} more keys)' if len(refused) > 1 else ''}; --resume trains "
            f"with the checkpoint's config, so undo the edit (only {_allowed_flags()} may change on resume)"
        )
    if changed:
        warn(
            f"{file} changes {', '.join(f'{k} ({_short(getattr(config, k))} -> {_short(getattr(edited, k))})' for k in changed)} "
            f"from {source.name}; resuming with it"
        )
        config.update({key: getattr(edited, key) for key in changed}, source=str(file))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def resume_trainer(
    run_dir: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    registry=None,
    listeners=(),
    warn: Callable[[str], None] | None = None,
) -> Trainer:
    """A Trainer positioned exactly where the run's newest loadable checkpoint left it; call ``train(run_dir)``.

    It trains with the checkpoint's own config (see :func:`resume_config`). The command line holds the run
    folder's lock (:mod:`gankit.runfolder`) while it calls this, since resuming trims the run's logs.
    """
    from gankit.engine import Trainer

    run_dir = check_run_folder(run_dir)
    warn = warn or _warn
    _refuse_overrides(overrides)
    path, tensors, metadata = newest_loadable_checkpoint(run_dir, warn, usable=check_resumable)
    config = resume_config(run_dir, metadata, source=path, overrides=overrides, warn=warn)
    step = metadata["step"]
    if config.steps <= step:
        if overrides and overrides.get("steps") is not None:
            raise GankitError(f"--steps {config.steps}: {run_dir} is already at step {step}; give a larger total")
        raise GankitError(f"{run_dir} already finished at step {step}; pass --steps N (N > {step}) to train it further")
    registry = registry or default_registry()
    pin_recorded_plugins(config, metadata, registry)
    trainer = Trainer(config, registry=registry, listeners=listeners)
    restore_trainer(trainer, tensors, metadata, source=path)
    _warn_if_data_changed(trainer, metadata, source=path, warn=warn)
    if trainer.distributed.is_main:  # under torchrun, rank 0 alone writes the run directory
        for log in ("metrics.jsonl", EVAL_LOG):  # the resumed run logs the steps after the checkpoint again
            truncate_metrics(run_dir / log, step, keep_events=False)
        remove_partial_writes(run_dir / "checkpoints")
    trainer.resumed_from = path
    return trainer


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


def _warn_if_data_changed(trainer: Trainer, metadata: dict[str, Any], *, source: Path, warn) -> None:
    """The data source's fingerprint (``DataSource.fingerprint()``) now and when the checkpoint was written."""
    before, now = metadata.get("data_fingerprint"), trainer.data_fingerprint
    if before is not None and now is not None and before != now:
        warn(
            f"the data changed since {source.name} was written (files added, removed or changed: fingerprint "
            f"{str(before)[:12]} then, {str(now)[:12]} now); the resumed run trains on the data as it is now"
        )


def pin_recorded_plugins(config: RunConfig, metadata: Mapping[str, Any], registry) -> None:
    """Settle the bare names of a run recorded by gankit 0.1 with the plugins its checkpoint says built them,
    where a plugin installed since registers the same name (newer runs record ``plugin:name`` already)."""
    config.arch = registry.recorded_spec("architecture", config.arch, metadata)
    config.loss = registry.recorded_spec("loss", config.loss, metadata)
    config.data = registry.recorded_spec("data", config.data, metadata)
    config.reg = [
        registry.recorded_spec("regularizer", spec, metadata, f"regularizer.{index}")
        for index, spec in enumerate(config.reg)
    ]


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
            check_resumable(path, tensors, metadata)
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
