"""Training in a run folder: the checks, the lock and the folder handling that ``gankit run`` and
``gankit.train()`` share, so the CLI and the Python API cannot treat a run folder differently."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from gankit.config import RunConfig
from gankit.errors import GankitError, GankitWarning
from gankit.options import parse_spec


def _warn(message: str) -> None:
    warnings.warn(GankitWarning(message), stacklevel=2)


def new_run(config: RunConfig, *, overwrite: bool = False, listeners: Iterable[Callable] = (),
            warn: Callable[[str], None] = _warn):
    """A Trainer for ``config`` and the folder it will write (``config.out``, or runs/<time>-<arch>-<loss>).

    Everything is built and checked (names, options, shapes, data, the folder) before the folder is touched;
    an existing run there is refused unless ``overwrite``. Train it with :func:`train_in_folder`.
    """
    data_root_note = store_data_root_absolute(config)
    # Normalised: "new/../old" must be seen as "old" before anything is checked or created.
    out_dir = Path(os.path.normpath(config.out)) if config.out else default_out(config)
    try:
        check_out(out_dir, config, overwrite)
    except OSError as error:  # a name too long, a folder that cannot be searched...
        from gankit.runfolder import os_error_message

        raise GankitError(os_error_message(error, out_dir)) from None
    from gankit.engine import Trainer

    trainer = Trainer(config, listeners=list(listeners))
    if data_root_note:  # said once the run is sure to start
        warn(data_root_note)
    return trainer, out_dir


def train_in_folder(out_dir: Path, trainer=None, *, overwrite: bool = False, resume_overrides: Mapping[str, Any] | None = None,
                    listeners: Iterable[Callable] = (), warn: Callable[[str], None] = _warn):
    """Train ``trainer`` (a new run from :func:`new_run`), or resume the run in ``out_dir`` when it is None,
    holding the run folder's lock throughout; returns the trainer. ``TrainingInterrupted`` passes through."""
    from gankit.distributed import Distributed
    from gankit.runfolder import writing_run

    # Rank 0 alone writes the run folder (torchrun), so it alone locks it.
    main = Distributed.from_environment().is_main
    claim = writing_run(out_dir, new_run=trainer is not None, replace=overwrite, main=main, warn=warn)
    with claim as on_checkpoint:
        if trainer is None:  # a resume trims the run's logs: only under the lock
            from gankit.resume import resume_trainer

            trainer = resume_trainer(out_dir, overrides=resume_overrides, listeners=list(listeners))
        trainer.train(out_dir, listeners=[on_checkpoint])
    return trainer


def store_data_root_absolute(config: RunConfig) -> str | None:
    """A relative --data-root is relative to where the run started; stored so, --resume and eval from
    another folder would look in the wrong place. Returns the line that says so, if it was changed."""
    if not config.data_root:
        return None
    absolute = os.path.abspath(os.path.expanduser(config.data_root))
    if absolute == config.data_root:
        return None
    note = f"data root {config.data_root} stored as {absolute}"
    config.data_root = absolute
    return note


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{parse_spec(config.arch).name}-{parse_spec(config.loss).name}"


def check_out(out_dir: Path, config: RunConfig, overwrite: bool) -> None:
    """Refuse an --out that cannot hold this run, before anything is built or written."""
    from gankit.runfolder import refuse_existing_run

    if out_dir.is_symlink() and not out_dir.exists():
        raise GankitError(f"--out {out_dir} is a symlink to {os.readlink(out_dir)}, which does not exist")
    if out_dir.exists() and not out_dir.is_dir():
        raise GankitError(f"--out {out_dir} is a file, not a folder")
    try:
        where = out_dir.resolve()
    except RuntimeError:  # Python < 3.13 raises this for a symlink loop
        raise GankitError(f"--out {out_dir} runs through a symlink loop") from None
    if config.data_root:
        data_root = Path(config.data_root).expanduser().resolve()
        if where == data_root or data_root in where.parents:
            raise GankitError(
                f"--out {out_dir} is inside --data-root {config.data_root}: the next run would train on this run's "
                "samples and plots; choose an --out outside the data folder"
            )
    for parent in where.parents:
        if (parent / "config.toml").is_file() and (parent / "checkpoints").is_dir():
            raise GankitError(f"--out {out_dir} is inside the run folder {parent}; choose a folder outside it")
    refuse_existing_run(out_dir, overwrite)
