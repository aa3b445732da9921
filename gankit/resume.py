"""Continuing a run: rebuild its Trainer from the run's own config, then put its training state
(:class:`gankit.state.TrainState`) where the newest loadable checkpoint left it, so on CPU a resumed run
continues bit for bit as if it had never stopped.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from gankit.checkpoint import newest_loadable_checkpoint, remove_partial_writes
from gankit.config import RunConfig, read_toml
from gankit.engine import Trainer
from gankit.errors import GankitError, GankitWarning, quoted
from gankit.evaluation import EVAL_LOG
from gankit.metrics_log import METRICS_LOG, truncate_metrics
from gankit.registry import default_registry
from gankit.state import check_resumable

# Config keys ``--resume`` may change: they do not alter what the next step computes.
RESUME_OVERRIDABLE = ("steps", "on_divergence", "keep_checkpoints")


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
            f"{file} was edited: {key} = {quoted(getattr(edited, key), 40)} there, {quoted(getattr(config, key), 40)} in "
            f"{source.name}{f' (and {len(refused) - 1} more keys)' if len(refused) > 1 else ''}; --resume trains "
            f"with the checkpoint's config, so undo the edit (only {_allowed_flags()} may change on resume)"
        )
    if changed:
        warn(
            f"{file} changes {', '.join(f'{k} ({quoted(getattr(config, k), 40)} -> {quoted(getattr(edited, k), 40)})' for k in changed)} "
            f"from {source.name}; resuming with it"
        )
        config.update({key: getattr(edited, key) for key in changed}, source=str(file))


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
    trainer.restore(path, tensors, metadata)
    _warn_if_data_changed(trainer.run.data.fingerprint, metadata, source=path, warn=warn)
    if trainer.run.distributed.is_main:  # under torchrun, rank 0 alone writes the run directory
        for log in (METRICS_LOG, EVAL_LOG):  # the resumed run logs the steps after the checkpoint again
            truncate_metrics(run_dir / log, step, keep_events=False)
        remove_partial_writes(run_dir / "checkpoints")
    return trainer


def _warn_if_data_changed(now: str | None, metadata: dict[str, Any], *, source: Path, warn) -> None:
    """The data source's fingerprint (``DataSource.fingerprint()``) now and when the checkpoint was written."""
    before = metadata.get("data_fingerprint")
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
    config.augment = [
        registry.recorded_spec("augmentation", spec, metadata, f"augmentation.{index}")
        for index, spec in enumerate(config.augment)
    ]
