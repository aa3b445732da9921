"""What a run folder, or a folder of runs (a sweep), says about its runs, read without torch and without
trusting it: the config, the logs, the checkpoints' metadata, the sample grids, the run's status, and a sweep's
plan and statuses. ``gankit report`` and ``gankit compare`` read runs only through it.

Nothing here raises on a damaged file: what cannot be read becomes a note (``RunRecord.notes``,
``SweepRecord.notes``), so that a report can say what is missing instead of failing."""
from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from gankit.errors import GankitError
from gankit.runfolder import holds_run, lock_holder

CHECKPOINT_NAME = re.compile(r"step-(\d+)\.safetensors")
SAMPLE_NAME = re.compile(r"step-(\d+)\.png")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # a checkpoint header is a few kB; a larger length is damage
MAX_LOG_BYTES = 512 * 1024 * 1024


@dataclass
class RunRecord:
    """One run folder as read from disk; ``notes`` lists what was missing or damaged, one line each."""

    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)  #: interval averages from metrics.jsonl
    events: list[dict[str, Any]] = field(default_factory=list)  #: divergence rows from metrics.jsonl
    evals: list[dict[str, Any]] = field(default_factory=list)  #: rows of eval.jsonl
    checkpoints: list[tuple[int, Path]] = field(default_factory=list)  #: (step, file), oldest first
    metadata: dict[str, Any] = field(default_factory=dict)  #: the newest readable checkpoint's metadata
    best: dict[str, Any] | None = None  #: {"metric", "value", "step"} of best.safetensors
    samples: list[tuple[int, Path]] = field(default_factory=list)  #: (step, PNG), oldest first
    running: str | None = None  #: who holds the run folder's lock now (``PID n``); None when no process does
    swept: dict[str, Any] = field(default_factory=dict)  #: its sweep's status.json entry (status, wall_seconds)
    notes: list[str] = field(default_factory=list)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def total_steps(self) -> int | None:
        steps = self.config.get("steps")
        return steps if isinstance(steps, int) and not isinstance(steps, bool) else None

    @property
    def last_step(self) -> int:
        """The furthest step the folder shows the run reached (a checkpoint or a logged interval)."""
        steps = [step for step, _ in self.checkpoints] + [row["step"] for row in self.metrics]
        return max(steps, default=0)

    @property
    def rollbacks(self) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("action") == "rollback"]

    @property
    def finished(self) -> bool:
        """Its newest checkpoint is the last step (as ``gankit sweep`` decides what is left to run)."""
        reached = max((step for step, _ in self.checkpoints), default=None)
        return self.total_steps is not None and reached is not None and reached >= self.total_steps

    def status(self) -> tuple[str, str]:
        """``(word, explanation)``: finished, diverged, interrupted, running or empty."""
        total, reached = self.total_steps, max((step for step, _ in self.checkpoints), default=None)
        stopped = [event for event in self.events if event.get("action") == "stop"]
        if self.running:
            return "running", f"another process ({self.running}) is writing this run now (step {self.last_step} so far)"
        if self.finished:
            return "finished", f"trained all {total} steps"
        if stopped:
            last = stopped[-1]
            return "diverged", f"stopped at step {last['step']}: {last.get('detail', 'divergence')}"
        if reached is None and not self.metrics:
            return "empty", "no checkpoint and no logged step: the run never trained"
        of_total = f" of {total}" if total is not None else ""
        where = f"its newest checkpoint is step {reached}" if reached is not None else "it wrote no checkpoint"
        return "interrupted", f"reached step {self.last_step}{of_total}; {where} (continue it with --resume)"

    def headline(self) -> tuple[str | None, bool]:
        """The eval value the run is judged by, and whether higher is better: the one it kept its best checkpoint
        by (config.toml's best_metric and best_mode, which a run with a metric records as the metric's
        headline), else the first number of its evaluations, taken as lower-is-better."""
        chosen = self.config.get("best_metric")
        if isinstance(chosen, str) and any(chosen in row for row in self.evals):
            return chosen, self.config.get("best_mode") == "max"
        for row in self.evals:
            for key, value in row.items():
                if key != "step" and finite(value):
                    return key, False
        return None, False

    def curve(self, key: str | None = None) -> list[tuple[int, float]]:
        """``(step, value)`` of one eval value (default: the headline), where it is a finite number."""
        key = key if key is not None else self.headline()[0]
        return [(row["step"], row[key]) for row in self.evals if finite(row.get(key))]


def read_run(folder: str | Path, swept: dict[str, Any] | None = None) -> RunRecord:
    """Everything gankit shows about the run in ``folder``; damage becomes notes, never an exception.
    ``swept``: its entry of its sweep's status.json, when the caller has read it (else looked up here)."""
    record = RunRecord(Path(folder))
    _read_config(record)
    record.metrics, record.events = _split_events(_read_jsonl(record, "metrics.jsonl"))
    record.evals = [row for row in _read_jsonl(record, "eval.jsonl") if "event" not in row]
    _read_checkpoints(record)
    record.samples = _numbered(record, record.folder / "samples", SAMPLE_NAME)
    record.running = lock_holder(record.folder)
    record.swept = swept if swept is not None else _entry_in_enclosing_sweep(record.folder)
    return record


def _read_config(record: RunRecord) -> None:
    from gankit.config import read_toml  # refuses a FIFO or device, which would block a plain read forever

    path = record.folder / "config.toml"
    if not path.exists() and not path.is_symlink():
        record.notes.append("config.toml is missing; the settings shown come from the newest checkpoint")
        return
    try:
        record.config = read_toml(path)
    except GankitError as error:
        record.notes.append(f"{error}; the settings shown come from the newest checkpoint")


def _read_jsonl(record: RunRecord, name: str) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log that are objects with an integer step; damaged lines are counted in a note."""
    path = record.folder / name
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):  # a FIFO would block the read forever
            record.notes.append(f"{name} is not a regular file; left out")
            return []
        if found.st_size > MAX_LOG_BYTES:
            record.notes.append(f"{name} is larger than {MAX_LOG_BYTES // 2**20} MiB; left out")
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as error:
        record.notes.append(f"{name} cannot be read ({_reason(error)})")
        return []
    rows, damaged = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            rows.append(row)
        else:
            damaged += 1
    if damaged:
        record.notes.append(f"{name}: {damaged} damaged line{'s' if damaged > 1 else ''} skipped")
    return rows


def _split_events(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # Rows with an "event" key are divergence events, not interval averages (gankit/metrics_log.py).
    return [row for row in rows if "event" not in row], [row for row in rows if "event" in row]


def _read_checkpoints(record: RunRecord) -> None:
    folder = record.folder / "checkpoints"
    record.checkpoints = _numbered(record, folder, CHECKPOINT_NAME)
    for _, path in reversed(record.checkpoints):
        metadata = checkpoint_metadata(path)
        if metadata is not None:
            record.metadata = metadata
            break
    else:
        if record.checkpoints:
            record.notes.append("no checkpoint's metadata could be read: the plugins that made the run are unknown")
    best = checkpoint_metadata(folder / "best.safetensors") if (folder / "best.safetensors").is_file() else None
    record.best = best.get("best") if best and isinstance(best.get("best"), dict) else None
    if not record.config and isinstance(record.metadata.get("config"), dict):
        record.config = record.metadata["config"]


def _numbered(record: RunRecord, folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as error:
        record.notes.append(f"{folder.name}/ cannot be listed ({_reason(error)})")
        return []
    found = [(int(match.group(1)), folder / name) for name in names if (match := pattern.fullmatch(name))]
    return sorted(found)


def checkpoint_metadata(path: Path) -> dict[str, Any] | None:
    """The gankit metadata in a checkpoint's safetensors header (no tensor is read, torch is not needed);
    None for a file that is not a readable gankit checkpoint."""
    from gankit.config import _open_regular as open_regular  # a FIFO named like a checkpoint would block a read

    try:
        with open_regular(path) as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
            metadata = json.loads(header["__metadata__"]["gankit"])
    except (GankitError, OSError, ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:200] or type(error).__name__


def finite(value: Any) -> bool:
    """A number a table or a mean can use: int or float, not bool, not nan or infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- a sweep: a folder of run folders --------------------------------------------------------------------


@dataclass
class SweepRecord:
    """A folder of runs as read from disk: gankit sweep's plan and statuses, when it wrote them, and the runs."""

    folder: Path
    manifest: dict[str, Any] | None = None  #: sweep.json: grid, seeds, base (the shared flags), runs (planned)
    statuses: dict[str, dict] = field(default_factory=dict)  #: status.json: each run's last attempt, by name
    runs: list[Path] = field(default_factory=list)  #: the manifest's runs that exist, else every run below
    notes: list[str] = field(default_factory=list)

    def name(self, run: Path) -> str:
        """A run's name in the sweep (as sweep.json and status.json name it): its folder, relative."""
        return run.relative_to(self.folder).as_posix()


def read_sweep(folder: str | Path) -> SweepRecord:
    """The runs of a sweep folder: those its sweep.json plans that have started, in the sweep's order; with no
    readable sweep.json, every run folder below it. Damage to sweep.json becomes a note."""
    from gankit.sweep import read_manifest, read_status

    sweep = SweepRecord(Path(folder))
    try:
        sweep.manifest = read_manifest(sweep.folder)
    except GankitError as error:
        sweep.notes.append(str(error))  # names the file and the reason
    if sweep.manifest is None:
        sweep.runs = find_runs(sweep.folder)
    else:
        sweep.runs = [run for run in _planned_runs(sweep) if holds_run(run)]
    sweep.statuses = read_status(sweep.folder)
    return sweep


def planned_runs(manifest: dict[str, Any]) -> Iterator[tuple[str, dict]]:
    """(name, entry) of each run sweep.json plans, in the sweep's order (entries without a name left out)."""
    for entry in manifest.get("runs", []):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            yield entry["name"], entry


def _planned_runs(sweep: SweepRecord) -> list[Path]:
    """The manifest's run folders; a name that would lead out of the sweep folder is left out, with a note
    (the report writes a report.html into each run folder)."""
    inside, root = [], sweep.folder.resolve()
    for name, _ in planned_runs(sweep.manifest or {}):
        parts = PurePosixPath(name).parts
        run = sweep.folder.joinpath(*parts)
        if not parts or ".." in parts or PurePosixPath(name).is_absolute() or not run.resolve().is_relative_to(root):
            sweep.notes.append(f"sweep.json names a run outside the sweep folder ({name!r}), which is not read")
            continue
        inside.append(run)
    return list(dict.fromkeys(inside))  # a name given twice is one run


def _entry_in_enclosing_sweep(run: Path) -> dict[str, Any]:
    """A run read on its own still gets what its sweep recorded (``<sweep>/<setting>/seed-N``)."""
    from gankit.sweep import MANIFEST, read_status

    sweep = run.resolve().parent.parent
    if not (sweep / MANIFEST).is_file():
        return {}
    return read_status(sweep).get(run.resolve().relative_to(sweep).as_posix(), {})


def find_runs(folder: Path) -> list[Path]:
    """The run folders under ``folder`` (recursively, not into a run, not through symlinks), sorted."""
    found = []
    for current, subfolders, _ in os.walk(folder):
        here = Path(current)
        if here != folder and holds_run(here):
            found.append(here)
            subfolders.clear()
        else:
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return sorted(found)
