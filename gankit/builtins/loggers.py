"""Builtin loggers: ``csv`` (one row per logged interval) and ``tensorboard`` (when the package is installed).

JSON lines (``metrics.jsonl``) are written by the engine for every run; these add other formats.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import gankit
from gankit.components import Logger
from gankit.errors import GankitError


class CSVLogger(Logger):
    """``metrics.csv`` in the run folder: a ``step`` column and one column per logged value.

    The columns are fixed by the first row; values that appear later (evaluations) go to ``eval.csv``.
    """

    def __init__(self, *, out) -> None:
        self.folder = Path(out)
        self._writers: dict[str, tuple[object, csv.DictWriter]] = {}

    def _write(self, name: str, row: dict) -> None:
        if name not in self._writers:
            path = self.folder / name
            handle = path.open("a", newline="", encoding="utf-8")
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
            if path.stat().st_size == 0:
                writer.writeheader()
            self._writers[name] = (handle, writer)
        handle, writer = self._writers[name]
        writer.writerow(row)
        handle.flush()

    def handle(self, event) -> None:
        if event.name == "log":
            self._write("metrics.csv", {"step": event.step, **event.data})
        elif event.name == "eval":
            self._write("eval.csv", {"step": event.step, **event.data.get("values", {})})

    def close(self) -> None:
        for handle, _ in self._writers.values():
            handle.close()
        self._writers.clear()


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``<run>/tensorboard``: every logged and evaluated number as a scalar."""

    def __init__(self, *, out) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GankitError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(Path(out) / "tensorboard"))

    def handle(self, event) -> None:
        if event.name == "start":
            self.writer.add_text("config", "```\n" + json.dumps(event.data, indent=2, default=str) + "\n```", 0)
        values = event.data if event.name == "log" else event.data.get("values", {}) if event.name == "eval" else {}
        prefix = "train" if event.name == "log" else "eval"
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, event.step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


@gankit.hookimpl
def gankit_register_loggers(register):
    register("csv", CSVLogger, description="metrics.csv (and eval.csv) in the run folder")
    register("tensorboard", TensorBoardLogger, description="TensorBoard scalars in <run>/tensorboard (needs tensorboard)")
