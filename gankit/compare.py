"""``gankit compare``: runs grouped by their setting (the config less the seed and what only names or speeds up
a run), with mean and standard deviation over seeds of the final and best metric values, throughput, wall time
and divergence events, read from each run's own files (config.toml, eval.jsonl, metrics.jsonl)."""
from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gankit.config import SETTINGS_BY_NAME
from gankit.errors import GankitError, shortened
from gankit.rundata import RunRecord, finite, read_run, read_sweep
from gankit.runfolder import holds_run

# Settings that tell runs of one setting apart, make them faster or say what they write besides the metric,
# without changing what they train.
RUN_IDENTITY = (
    "seed", "out", "threads", "device", "data_cache", "logger", "keep_checkpoints", "sample_every", "checkpoint_every",
    "log_every",
)


@dataclass
class Group:
    """The runs of one setting."""

    setting: dict[str, Any]  #: the config less RUN_IDENTITY
    runs: list[RunRecord] = field(default_factory=list)


# -- reading runs -----------------------------------------------------------------------------------------


def read_runs(paths: Sequence[str | Path]) -> list[RunRecord]:
    """The runs of each path: a run folder, or a sweep folder (the runs its sweep.json plans that have started;
    without one, every run folder below it). A path is read once however often it is given."""
    found: dict[Path, RunRecord] = {}
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise GankitError(f"{shortened(path)}: {'no such folder' if not path.exists() else 'not a folder'}")
        if holds_run(path):
            record = read_run(path)
            if not record.config:
                raise GankitError(f"{shortened(path)} has no readable config.toml to tell its setting")
            found.setdefault(path.resolve(), record)
            continue
        sweep = read_sweep(path)
        if sweep.notes:  # a damaged sweep.json: which runs belong to the sweep is not known
            raise GankitError(sweep.notes[0])
        if sweep.manifest is None and not sweep.runs:
            raise GankitError(
                f"{shortened(path)} is neither a run folder (config.toml, checkpoints/) nor a sweep folder "
                "(sweep.json, or run folders below it)"
            )
        for run in sweep.runs:
            if run.resolve() not in found:
                found[run.resolve()] = read_run(run, sweep.statuses.get(sweep.name(run), {}))
    return list(found.values())


# -- one run's numbers ------------------------------------------------------------------------------------


def final_value(record: RunRecord) -> float | None:
    values = record.curve()
    return values[-1][1] if values else None


def best_value(record: RunRecord) -> float | None:
    """The best headline value in the metric's direction, as best.safetensors is kept."""
    values = [value for _, value in record.curve()]
    if not values:
        return None
    return max(values) if record.headline()[1] else min(values)


def images_per_second(record: RunRecord) -> float | None:
    """The mean over metrics.jsonl's intervals."""
    speeds = [row["img_per_s"] for row in record.metrics if finite(row.get("img_per_s"))]
    return statistics.fmean(speeds) if speeds else None


def wall_seconds(record: RunRecord) -> float | None:
    """As the sweep recorded it (its children's time); None outside a sweep."""
    wall = record.swept.get("wall_seconds")
    return wall if finite(wall) else None


def run_numbers(record: RunRecord) -> dict[str, Any]:
    return {
        "path": str(record.folder), "seed": record.seed, "final": final_value(record), "best": best_value(record),
        "final_step": max((row["step"] for row in record.metrics), default=None), "steps": record.config.get("steps"),
        "img_per_s": images_per_second(record), "wall_seconds": wall_seconds(record),
        "divergence_events": len(record.events), "rollbacks": len(record.rollbacks), "status": record.swept.get("status"),
    }


# -- grouping ---------------------------------------------------------------------------------------------


def group_runs(runs: Sequence[RunRecord]) -> tuple[list[Group], list[str]]:
    """Groups of runs with the same setting, in the order first seen, and the settings that differ between them.
    A run whose setting is unknown (no config.toml, no readable checkpoint) is in no group."""
    groups: dict[str, Group] = {}
    for run in runs:
        if not run.config:
            continue
        setting = {key: value for key, value in run.config.items() if key not in RUN_IDENTITY}
        groups.setdefault(json.dumps(setting, sort_keys=True, default=str), Group(setting)).runs.append(run)
    return list(groups.values()), telling_keys(list(groups.values()))


def telling_keys(groups: Sequence[Group]) -> list[str]:
    """The settings that tell the groups apart, components first: a setting that follows from those before it
    (the learning rates a loss recommends) adds no column, as it tells no two groups apart."""
    keys = list(dict.fromkeys(key for group in groups for key in group.setting))
    keys.sort(key=lambda key: SETTINGS_BY_NAME[key].kind is None if key in SETTINGS_BY_NAME else True)
    chosen: list[str] = []
    labels = {id(group): () for group in groups}
    for key in keys:
        extended = {id(group): (*labels[id(group)], json.dumps(group.setting.get(key), default=str)) for group in groups}
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
    return summarize(read_runs(paths))


def summarize(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """The comparison of runs already read (``gankit report`` shows the same for a sweep)."""
    groups, differing = group_runs(runs)
    rows = []
    for group in groups:
        key, higher = group.runs[0].headline()
        numbers = [run_numbers(run) for run in group.runs]
        rows.append({
            "setting": {name: shown_value(name, group.setting.get(name)) for name in differing},
            "config": group.setting,
            # A metric named without --eval-every (a data source may recommend one) scored nothing.
            "metric": group.setting.get("metric") if group.setting.get("eval_every") else None,
            "key": key,
            "higher_is_better": higher,
            "seeds": sorted(run.seed for run in group.runs if isinstance(run.seed, int)),
            "runs": len(group.runs),
            "finished": sum(run.finished for run in group.runs),
            **{name: spread([run[name] for run in numbers]) for name in ("final", "best", "img_per_s", "wall_seconds")},
            "divergence_events": sum(run["divergence_events"] for run in numbers),
            "rollbacks": sum(run["rollbacks"] for run in numbers),
            "run_details": numbers,
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


def mean_std(stats: dict[str, Any], digits: str = ".4g") -> str:
    """``mean ± std`` of a :func:`spread`; the mean alone for one value, nothing for none."""
    if stats["mean"] is None:
        return ""
    text = format(stats["mean"], digits)
    return text + (f" ± {format(stats['std'], digits)}" if stats["std"] is not None else "")


@dataclass
class TableText:
    """A comparison as the text of a table: the terminal's (rich) and the sweep report's (HTML) show the same."""

    title: str
    caption: str
    header: list[str]
    rows: list[list[str]]  #: one per setting, the cells as text, in the header's order
    numeric: int  #: the header's columns from this one on hold numbers


def table_text(result: dict[str, Any]) -> TableText:
    rows = result["rows"]
    keys = {row["key"] for row in rows if row["key"]}
    headline = keys.pop() if len(keys) == 1 else "metric"
    better = {row["higher_is_better"] for row in rows if row["key"]}
    direction = "" if len(better) != 1 else (" (higher is better)" if better.pop() else " (lower is better)")
    header = [key.replace("_", "-") for key in result["columns"]]
    header += ["seeds", f"final {headline}", f"best {headline}", "img/s", "wall s", "diverged"]
    cells = []
    for row in rows:
        seeds = ",".join(str(seed) for seed in row["seeds"])
        if row["finished"] < row["runs"]:
            seeds += f" ({row['runs'] - row['finished']} unfinished)"
        cells.append([
            *(row["setting"][key] for key in result["columns"]), seeds, mean_std(row["final"]), mean_std(row["best"]),
            mean_std(row["img_per_s"], ".0f"), mean_std(row["wall_seconds"], ".1f"), str(row["divergence_events"]),
        ])
    return TableText(
        title=f"gankit compare: {sum(row['runs'] for row in rows)} runs, {len(rows)} settings",
        caption=f"{headline}{direction}: mean ± std over seeds", header=header, rows=cells,
        numeric=len(result["columns"]) + 1,
    )


def table(result: dict[str, Any]):
    """The rich table of a comparison."""
    from rich.table import Table

    text = table_text(result)
    grid = Table(title=text.title, caption=text.caption)
    for index, name in enumerate(text.header):
        grid.add_column(name, justify="right" if index >= text.numeric else "left")
    for cells in text.rows:
        grid.add_row(*cells)
    return grid


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console

    if not result["rows"]:  # a sweep whose runs have not started (e.g. after --print-commands)
        Console(highlight=False).print("gankit compare: no runs with a config.toml yet")
        return
    Console(highlight=False).print(table(result))


def mean_and_band(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float, float, float]]:
    """``(step, mean, min, max)`` over the runs' curves at each step any of them reached."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    return [(step, statistics.fmean(values), min(values), max(values)) for step, values in sorted(by_step.items())]


def plot(result: dict[str, Any], path: str | Path) -> Path | None:
    """The metric curves per setting: the mean over seeds as a line, their min-max range as a band."""
    from gankit.plots import STATISTIC_COLOURS, draw_band_plot, LOSS_SERIES

    colours = [colour for _, colour in LOSS_SERIES] + list(STATISTIC_COLOURS)
    series = []
    for index, (row, curves) in enumerate(zip(result["rows"], result["curves"])):
        points = mean_and_band(curves)
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
