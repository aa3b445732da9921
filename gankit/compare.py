"""``gankit compare``: runs grouped by their setting (the config less the seed and what only names or speeds up
a run), with mean and standard deviation over seeds of the final and best metric values, throughput, wall time
and divergence events, read from each run's own files (config.toml, eval.jsonl, metrics.jsonl)."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gankit.config import SETTINGS_BY_NAME, read_toml
from gankit.errors import GankitError, shortened

# Settings that tell runs of one setting apart, make them faster or say what they write besides the metric,
# without changing what they train.
RUN_IDENTITY = (
    "seed", "out", "threads", "device", "data_cache", "logger", "keep_checkpoints", "sample_every", "checkpoint_every",
    "log_every",
)


@dataclass
class RunSummary:
    """What one run's files say about it."""

    path: Path
    config: dict[str, Any]
    evaluations: list[dict]  #: eval.jsonl's rows, oldest first
    key: str | None  #: the headline value in the evaluations
    higher_is_better: bool
    final_step: int | None  #: the last step metrics.jsonl logged
    img_per_s: float | None  #: the mean over metrics.jsonl's intervals
    divergence_events: int
    rollbacks: int
    wall_seconds: float | None  #: as the sweep recorded it (its children's time); None outside a sweep
    status: str | None  #: the sweep's word for the last attempt (finished, failed, interrupted)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def finished(self) -> bool:
        return self.final_step is not None and self.final_step >= self.config.get("steps", math.inf)

    def curve(self) -> list[tuple[float, float]]:
        return [(row["step"], row[self.key]) for row in self.evaluations if _number(row.get(self.key))]

    def final(self) -> float | None:
        values = self.curve()
        return values[-1][1] if values else None

    def best(self) -> float | None:
        values = [value for _, value in self.curve()]
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "seed": self.seed, "final": self.final(), "best": self.best(),
            "final_step": self.final_step, "steps": self.config.get("steps"), "img_per_s": self.img_per_s,
            "wall_seconds": self.wall_seconds, "divergence_events": self.divergence_events, "rollbacks": self.rollbacks,
            "status": self.status,
        }


@dataclass
class Group:
    """The runs of one setting."""

    setting: dict[str, Any]  #: the config less RUN_IDENTITY
    runs: list[RunSummary] = field(default_factory=list)


# -- reading runs -----------------------------------------------------------------------------------------


def find_runs(paths: Sequence[str | Path]) -> list[RunSummary]:
    """The runs of each path: a run folder, or a sweep folder (its runs that got as far as a config.toml)."""
    from gankit.runfolder import holds_run
    from gankit.sweep import MANIFEST, iter_manifest_runs, read_status

    found: dict[Path, RunSummary] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise GankitError(f"{shortened(path)}: {'no such folder' if not path.exists() else 'not a folder'}")
        if (path / MANIFEST).is_file():
            statuses = read_status(path)
            for name, _ in iter_manifest_runs(path):
                run = path / name
                if (run / "config.toml").is_file() and run.resolve() not in found:
                    found[run.resolve()] = read_run(run, statuses.get(name, {}))
        elif holds_run(path):
            if not (path / "config.toml").is_file():
                raise GankitError(f"{shortened(path)} has no config.toml to tell its setting")
            found.setdefault(path.resolve(), read_run(path, _status_in_sweep(path)))
        else:
            raise GankitError(
                f"{shortened(path)} is neither a run folder (config.toml, checkpoints/) nor a sweep folder ({MANIFEST})"
            )
    return list(found.values())


def _status_in_sweep(run: Path) -> dict:
    """A run given by its own folder still gets what its sweep recorded (``<sweep>/<setting>/seed-N``)."""
    from gankit.sweep import MANIFEST, read_status

    sweep = run.resolve().parent.parent
    if not (sweep / MANIFEST).is_file():
        return {}
    return read_status(sweep).get(run.resolve().relative_to(sweep).as_posix(), {})


def read_run(path: Path, status: dict) -> RunSummary:
    config = read_toml(path / "config.toml")
    rows, events = _read_jsonl(path / "metrics.jsonl")
    evaluations, _ = _read_jsonl(path / "eval.jsonl")
    key, higher = _headline(config, evaluations)
    speeds = [row["img_per_s"] for row in rows if _number(row.get("img_per_s"))]
    wall = status.get("wall_seconds")
    return RunSummary(
        path=path, config=config, evaluations=evaluations, key=key, higher_is_better=higher,
        final_step=max((row["step"] for row in rows), default=None),
        img_per_s=statistics.fmean(speeds) if speeds else None,
        divergence_events=len(events), rollbacks=sum(1 for event in events if event.get("action") == "rollback"),
        wall_seconds=wall if _number(wall) else None, status=status.get("status"),
    )


def _read_jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    """(interval or evaluation rows, event rows) of a JSON-lines log; lines cut short by a kill are skipped."""
    rows, events = [], []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows, events
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and _number(row.get("step")):
            (events if "event" in row else rows).append(row)
    return rows, events


def _headline(config: dict, evaluations: list[dict]) -> tuple[str | None, bool]:
    """The value the run kept its best checkpoint by (config.toml's best_metric and best_mode, which a run
    with a metric records as the metric's headline), else the first value of the evaluations."""
    chosen = config.get("best_metric")
    if chosen and any(chosen in row for row in evaluations):
        return chosen, config.get("best_mode") == "max"
    for row in evaluations:
        for key, value in row.items():
            if key != "step" and _number(value):
                return key, False
    return None, False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- grouping ---------------------------------------------------------------------------------------------


def group_runs(runs: Sequence[RunSummary]) -> tuple[list[Group], list[str]]:
    """Groups of runs with the same setting, in the order first seen, and the settings that differ between them."""
    groups: dict[str, Group] = {}
    for run in runs:
        setting = {key: value for key, value in run.config.items() if key not in RUN_IDENTITY}
        groups.setdefault(json.dumps(setting, sort_keys=True), Group(setting)).runs.append(run)
    return list(groups.values()), telling_keys(list(groups.values()))


def telling_keys(groups: Sequence[Group]) -> list[str]:
    """The settings that tell the groups apart, components first: a setting that follows from those before it
    (the learning rates a loss recommends) adds no column, as it tells no two groups apart."""
    keys = list(dict.fromkeys(key for group in groups for key in group.setting))
    keys.sort(key=lambda key: SETTINGS_BY_NAME[key].kind is None if key in SETTINGS_BY_NAME else True)
    chosen: list[str] = []
    labels = {id(group): () for group in groups}
    for key in keys:
        extended = {id(group): (*labels[id(group)], json.dumps(group.setting.get(key))) for group in groups}
        if len(set(extended.values())) > len(set(labels.values())):
            chosen.append(key)
            labels = extended
    return chosen


def shown_value(key: str, value: Any) -> str:
    """A setting as a table shows it: components without their plugin's name, lists joined with ``+``."""
    if isinstance(value, list):
        return "+".join(shown_value(key, item) for item in value) or "none"
    if value is None:
        return "-"
    kind = SETTINGS_BY_NAME[key].kind if key in SETTINGS_BY_NAME else None
    if kind and isinstance(value, str):
        from gankit.options import format_spec, parse_spec

        try:
            spec = parse_spec(value)
            return format_spec(spec.name, spec.options)
        except GankitError:
            return value
    return str(value)


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; None for fewer than two) and count of the values given."""
    present = [value for value in values if value is not None]
    return {
        "mean": statistics.fmean(present) if present else None,
        "std": statistics.stdev(present) if len(present) > 1 else None,
        "n": len(present),
    }


def comparison(paths: Sequence[str | Path]) -> dict[str, Any]:
    """What ``gankit compare`` shows, as data: the differing settings and one row per setting."""
    runs = find_runs(paths)
    groups, differing = group_runs(runs)
    rows = []
    for group in groups:
        first = group.runs[0]
        rows.append({
            "setting": {key: shown_value(key, group.setting.get(key)) for key in differing},
            "config": group.setting,
            # A metric named without --eval-every (a data source may recommend one) scored nothing.
            "metric": group.setting.get("metric") if group.setting.get("eval_every") else None,
            "key": first.key,
            "higher_is_better": first.higher_is_better,
            "seeds": sorted(run.seed for run in group.runs if run.seed is not None),
            "runs": len(group.runs),
            "finished": sum(run.finished for run in group.runs),
            "final": spread([run.final() for run in group.runs]),
            "best": spread([run.best() for run in group.runs]),
            "img_per_s": spread([run.img_per_s for run in group.runs]),
            "wall_seconds": spread([run.wall_seconds for run in group.runs]),
            "divergence_events": sum(run.divergence_events for run in group.runs),
            "rollbacks": sum(run.rollbacks for run in group.runs),
            "run_details": [run.as_dict() for run in group.runs],
        })
    return {"columns": differing, "rows": rows, "curves": [[run.curve() for run in group.runs] for group in groups]}


# -- output -----------------------------------------------------------------------------------------------


def as_json(result: dict[str, Any]) -> str:
    return json.dumps({"columns": result["columns"], "rows": result["rows"]}, indent=2)


CSV_STATISTICS = ("final", "best", "img_per_s", "wall_seconds")


def as_csv(result: dict[str, Any]) -> str:
    """One line per setting: the differing settings, then the same numbers as the JSON (flattened)."""
    header = [*result["columns"], "seeds", "runs", "finished", "metric", "key"]
    header += [f"{name}_{part}" for name in CSV_STATISTICS for part in ("mean", "std", "n")]
    header += ["divergence_events", "rollbacks"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in result["rows"]:
        cells = [row["setting"][key] for key in result["columns"]]
        cells += [" ".join(str(seed) for seed in row["seeds"]), row["runs"], row["finished"], row["metric"] or "", row["key"] or ""]
        cells += ["" if row[name][part] is None else row[name][part] for name in CSV_STATISTICS for part in ("mean", "std", "n")]
        cells += [row["divergence_events"], row["rollbacks"]]
        writer.writerow(cells)
    return buffer.getvalue()


def _mean_std(stats: dict[str, Any], digits: str = ".4g") -> str:
    if stats["mean"] is None:
        return ""
    text = format(stats["mean"], digits)
    return text + (f" ± {format(stats['std'], digits)}" if stats["std"] is not None else "")


def table(result: dict[str, Any]):
    """The rich table of a comparison."""
    from rich.table import Table

    rows = result["rows"]
    keys = {row["key"] for row in rows if row["key"]}
    headline = keys.pop() if len(keys) == 1 else "metric"
    better = {row["higher_is_better"] for row in rows if row["key"]}
    direction = "" if len(better) != 1 else (" (higher is better)" if better.pop() else " (lower is better)")
    total = sum(row["runs"] for row in rows)
    grid = Table(title=f"gankit compare: {total} runs, {len(rows)} settings", caption=f"{headline}{direction}: mean ± std over seeds")
    for key in result["columns"]:
        grid.add_column(key.replace("_", "-"))
    for name in ("seeds", f"final {headline}", f"best {headline}", "img/s", "wall s", "diverged"):
        grid.add_column(name, justify="left" if name == "seeds" else "right")
    for row in rows:
        seeds = ",".join(str(seed) for seed in row["seeds"])
        if row["finished"] < row["runs"]:
            seeds += f" ({row['runs'] - row['finished']} unfinished)"
        grid.add_row(
            *(row["setting"][key] for key in result["columns"]), seeds, _mean_std(row["final"]), _mean_std(row["best"]),
            _mean_std(row["img_per_s"], ".0f"), _mean_std(row["wall_seconds"], ".1f"), str(row["divergence_events"]),
        )
    return grid


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console

    if not result["rows"]:  # a sweep whose runs have not started (e.g. after --print-commands)
        Console(highlight=False).print("gankit compare: no runs with a config.toml yet")
        return
    Console(highlight=False).print(table(result))


def plot(result: dict[str, Any], path: str | Path) -> Path | None:
    """The metric curves per setting: the mean over seeds as a line, their min-max range as a band."""
    from gankit.plots import STATISTIC_COLOURS, draw_band_plot, LOSS_SERIES

    colours = [colour for _, colour in LOSS_SERIES] + list(STATISTIC_COLOURS)
    series = []
    for index, (row, curves) in enumerate(zip(result["rows"], result["curves"])):
        by_step: dict[float, list[float]] = {}
        for curve in curves:
            for step, value in curve:
                by_step.setdefault(step, []).append(value)
        points = [(step, statistics.fmean(values), min(values), max(values)) for step, values in sorted(by_step.items())]
        label = " ".join(f"{key}={value}" for key, value in row["setting"].items()) or "runs"
        series.append((shortened(label, 40), colours[index % len(colours)], points))
    keys = {row["key"] for row in result["rows"] if row["key"]}
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GankitError(f"--plot {shortened(path)}: give a .png file")
    try:
        return draw_band_plot(series, path, title=f"{', '.join(sorted(keys)) or 'metric'}: mean over seeds, band min-max")
    except OSError as error:
        raise GankitError(f"cannot write --plot {shortened(path)}: {error.strerror or error}") from None
