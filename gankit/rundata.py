"""What a run folder says about its run, read without torch and without trusting it: the config, the logs,
the checkpoints' metadata, the sample grids, and the run's status. ``gankit report`` draws from it.

Nothing here raises on a damaged file: what cannot be read becomes a note (``RunRecord.notes``), so that a
report can say what is missing instead of failing."""
from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gankit.runfolder import LOCK_NAME, holds_run

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
    running: bool = False  #: another process holds the run folder's lock now
    notes: list[str] = field(default_factory=list)

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

    def status(self) -> tuple[str, str]:
        """``(word, explanation)``: finished, diverged, interrupted, running or empty."""
        total, reached = self.total_steps, max((step for step, _ in self.checkpoints), default=None)
        stopped = [event for event in self.events if event.get("action") == "stop"]
        if self.running:
            return "running", f"another process is writing this run now (step {self.last_step} so far)"
        if total is not None and reached is not None and reached >= total:
            return "finished", f"trained all {total} steps"
        if stopped:
            last = stopped[-1]
            return "diverged", f"stopped at step {last['step']}: {last.get('detail', 'divergence')}"
        if reached is None and not self.metrics:
            return "empty", "no checkpoint and no logged step: the run never trained"
        of_total = f" of {total}" if total is not None else ""
        where = f"its newest checkpoint is step {reached}" if reached is not None else "it wrote no checkpoint"
        return "interrupted", f"reached step {self.last_step}{of_total}; {where} (continue it with --resume)"


def read_run(folder: str | Path) -> RunRecord:
    """Everything a report shows about the run in ``folder``; damage becomes notes, never an exception."""
    record = RunRecord(Path(folder))
    _read_config(record)
    record.metrics, record.events = _split_events(_read_jsonl(record, "metrics.jsonl"))
    record.evals = [row for row in _read_jsonl(record, "eval.jsonl") if "event" not in row]
    _read_checkpoints(record)
    record.samples = _numbered(record, record.folder / "samples", SAMPLE_NAME)
    record.running = _lock_held(record.folder / LOCK_NAME)
    return record


def _read_config(record: RunRecord) -> None:
    path = record.folder / "config.toml"
    try:
        record.config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        record.notes.append("config.toml is missing; the settings shown come from the newest checkpoint")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as error:
        record.notes.append(f"config.toml cannot be read ({_reason(error)}); the settings shown come from the newest checkpoint")


def _read_jsonl(record: RunRecord, name: str) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log that are objects with an integer step; damaged lines are counted in a note."""
    path = record.folder / name
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
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
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
            metadata = json.loads(header["__metadata__"]["gankit"])
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def _lock_held(path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: runs are not locked there
        return False
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(descriptor)


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error).splitlines()[0][:200] or type(error).__name__


# -- a sweep: a folder of run folders --------------------------------------------------------------------

IGNORED_SETTINGS = ("seed", "out")  # what tells the runs of one setting apart


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


def setting_key(config: dict[str, Any]) -> str:
    """The settings of a run less its seed and folder, as one comparable string."""
    kept = {key: value for key, value in config.items() if key not in IGNORED_SETTINGS}
    return json.dumps(kept, sort_keys=True, default=str)


def group_runs_by_setting(records: list[RunRecord]) -> list[list[RunRecord]]:
    """Runs with the same settings but for the seed and folder, one group each, in first-seen order.

    gankit/compare.py (built alongside) groups runs for ``gankit compare``; this is the report's own small
    grouping until the two are merged."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(setting_key(record.config), []).append(record)
    return list(groups.values())


def differing_settings(records: list[RunRecord]) -> list[str]:
    """The setting names (not seed or out) whose values are not the same in every run."""
    names = sorted({key for record in records for key in record.config} - set(IGNORED_SETTINGS))
    return [
        name for name in names
        if len({json.dumps(record.config.get(name), sort_keys=True, default=str) for record in records}) > 1
    ]


def headline(record: RunRecord) -> tuple[str | None, bool]:
    """The eval value a run is judged by (``best_metric``, else the metric's first value) and whether higher
    is better."""
    key = record.config.get("best_metric")
    higher = record.config.get("best_mode") == "max"
    if isinstance(key, str) and any(key in row for row in record.evals):
        return key, higher
    for row in record.evals:
        for name, value in row.items():
            if name not in ("step", "metric") and _finite(value):
                return name, higher
    return None, higher


def eval_series(record: RunRecord, key: str) -> list[tuple[int, float]]:
    return [(row["step"], float(row[key])) for row in record.evals if _finite(row.get(key))]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
