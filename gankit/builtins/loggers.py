"""Builtin loggers: ``csv`` (one row per logged interval) and ``tensorboard`` (when the package is installed).

JSON lines (``metrics.jsonl``) are written by the engine for every run; these add other formats. Like
``metrics.jsonl``, both drop what was logged after the step a run resumes from (``RunStarted``) or rolls back
to (a ``DivergenceDetected`` rollback), so a resumed run's logs hold each step once.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

import gankit
from gankit.components import Logger
from gankit.errors import GankitError
from gankit.events import DivergenceDetected, EvaluationDone, Event, RunStarted, StepLogged


class CSVLogger(Logger):
    """``metrics.csv`` in the run folder: a ``step`` column and one column per logged value.

    The columns are those of the file's header (the first row written); evaluations go to ``eval.csv``. A value
    the header lacks widens it (earlier rows get an empty cell): eval.csv files written before evaluations
    reached the loggers have a ``step`` column alone, and a resumed run must not drop its values.
    """

    FILES = ("metrics.csv", "eval.csv")

    def __init__(self, *, out) -> None:
        self.folder = Path(out)
        self._writers: dict[str, tuple[object, csv.DictWriter]] = {}

    def _write(self, name: str, row: dict) -> None:
        if name not in self._writers:
            self._open(name, row)
        handle, writer = self._writers[name]
        if not set(row) <= set(writer.fieldnames):
            handle.close()
            del self._writers[name]
            _widen_csv_header(self.folder / name, [key for key in row if key not in writer.fieldnames])
            self._open(name, row)
            handle, writer = self._writers[name]
        writer.writerow(row)
        handle.flush()

    def _open(self, name: str, row: dict) -> None:
        path = self.folder / name
        header = _csv_header(path)
        handle = path.open("a", newline="", encoding="utf-8")
        writer = csv.DictWriter(handle, fieldnames=header or list(row), extrasaction="ignore")
        if not header:
            writer.writeheader()
        self._writers[name] = (handle, writer)

    def _drop_after(self, step: int, names) -> None:
        for name in names:
            if name in self._writers:
                self._writers.pop(name)[0].close()
            _drop_csv_rows_after(self.folder / name, step)

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):  # a resumed run logs the steps after its checkpoint again
            self._drop_after(event.step, self.FILES)
        elif isinstance(event, DivergenceDetected) and event.action == "rollback":
            self._drop_after(event.to_step, ("metrics.csv",))  # the losses logged after the checkpoint are gone
        elif isinstance(event, StepLogged):
            self._write("metrics.csv", {"step": event.step, **event.values, "img_per_s": event.images_per_second})
        elif isinstance(event, EvaluationDone):
            self._write("eval.csv", {"step": event.step, **event.values})

    def close(self) -> None:
        for handle, _ in self._writers.values():
            handle.close()
        self._writers.clear()


def _csv_header(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def _drop_csv_rows_after(path: Path, step: int) -> None:
    """Keep the header and the rows up to ``step`` (and no row cut short by a kill); replace the file atomically."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, kept = rows[0], [rows[0]]
    for row in rows[1:]:
        try:
            if len(row) == len(header) and int(row[0]) <= step:
                kept.append(row)
        except ValueError:
            continue
    if len(kept) < len(rows):
        _replace_csv(path, kept)


def _widen_csv_header(path: Path, columns: list[str]) -> None:
    """Add ``columns`` to the header of the file at ``path``, with empty cells in its rows; atomically."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    _replace_csv(path, [rows[0] + columns] + [row + [""] * len(columns) for row in rows[1:]])


def _replace_csv(path: Path, rows: list[list[str]]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows(rows)
        os.replace(temporary, path)
    except BaseException:  # a failed rewrite leaves the old file and no stray temporary
        Path(temporary).unlink(missing_ok=True)
        raise


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``<run>/tensorboard``: every logged and evaluated number as a scalar.

    A resumed run (or a rollback) opens its writer with ``purge_step``, so TensorBoard hides what the run had
    logged after the step it continues from.
    """

    def __init__(self, *, out) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GankitError("--logger tensorboard needs the tensorboard package: pip install tensorboard") from None
        self._summary_writer = SummaryWriter
        self.log_dir = str(Path(out) / "tensorboard")
        self.writer = None

    def _open(self, *, purge_step: int | None) -> None:
        # TensorBoard hides the events at ``purge_step`` and later, which the run is about to log again.
        self.close()
        self.writer = self._summary_writer(log_dir=self.log_dir, purge_step=purge_step)

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._open(purge_step=event.step + 1 if event.step > 0 else None)  # a fresh run has nothing to hide
            self.writer.add_text("config", "```\n" + json.dumps(event.config, indent=2, default=str) + "\n```", event.step)
        elif isinstance(event, DivergenceDetected) and event.action == "rollback":
            self._open(purge_step=event.to_step + 1)
        elif isinstance(event, StepLogged):
            self._add_scalars("train", {**event.values, "img_per_s": event.images_per_second}, event.step)
        elif isinstance(event, EvaluationDone):
            self._add_scalars("eval", event.values, event.step)

    def _add_scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


@gankit.hookimpl
def gankit_register_loggers(register):
    register("csv", CSVLogger, description="metrics.csv (and eval.csv) in the run folder")
    register("tensorboard", TensorBoardLogger, description="TensorBoard scalars in <run>/tensorboard (needs tensorboard)")
