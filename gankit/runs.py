"""Starting a new training run in its run folder: the checks and folder handling that ``gankit run`` and
``gankit.train()`` share, so the CLI and the Python API cannot treat a run folder differently."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from gankit.config import RunConfig
from gankit.errors import GankitError
from gankit.options import parse_spec


def new_run(config: RunConfig, *, overwrite: bool = False, listeners: Iterable[Callable] = ()):
    """A Trainer for ``config`` and the folder it will write (``config.out``, or runs/<time>-<arch>-<loss>);
    an existing run there is refused unless ``overwrite``. Call ``trainer.train(folder)`` next."""
    out_dir = Path(config.out) if config.out else default_out(config)
    refuse_existing_run(out_dir, overwrite)
    from gankit.engine import Trainer

    return Trainer(config, listeners=list(listeners)), out_dir


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{parse_spec(config.arch).name}-{parse_spec(config.loss).name}"


def refuse_existing_run(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise GankitError(f"--out {out_dir} is a file, not a folder")
    holds_run = (out_dir / "config.toml").exists() or (out_dir / "checkpoints").exists()
    if holds_run and not overwrite:
        raise GankitError(
            f"{out_dir} already holds a run; continue it with --resume {out_dir}, choose another --out, "
            "or pass --overwrite to replace it"
        )
    if holds_run:
        for name in ("checkpoints", "samples"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        for name in ("config.toml", "metrics.jsonl"):
            (out_dir / name).unlink(missing_ok=True)
