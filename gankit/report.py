"""``gankit report``: one self-contained HTML file about a run, or about a sweep (a folder of runs), that opens
offline: images are inline data: URIs, plots inline SVG, the one small script inline; nothing is fetched, and
a Content-Security-Policy makes the browser refuse any fetch. Every string from the run is escaped."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
from html import escape
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from gankit import __version__
from gankit.errors import GankitError, shortened
from gankit.plots import ENGINE_VALUES, LOSS_SERIES, MAX_GIF_FRAMES
from gankit.rundata import RunRecord, SweepRecord, finite, planned_runs, read_run, read_sweep
from gankit.runfolder import holds_run
from gankit.svgplot import Marker, Series, colour, line_chart

REPORT_NAME = "report.html"
MAX_IMAGE_BYTES = 16 * 1024 * 1024
EVENT_COLOURS = {"rollback": "#d62728", "stop": "#7f0000", "warn": "#ff7f0e"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px;margin:0 0 6px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} .num{text-align:right;font-variant-numeric:tabular-nums}
.status{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.finished{background:#2ca02c} .interrupted{background:#ff7f0e} .diverged{background:#d62728}
.running{background:#1f77b4} .empty{background:#7f7f7f}
.notes{background:#fff6e0;border:1px solid #f0c36d;padding:6px 12px} .missing{color:#777;font-style:italic}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:10px}
svg.chart{display:block;width:100%;height:auto;font-size:11px;margin:6px 0} .swatch{display:inline-block;width:14px;height:10px;margin-right:6px}
svg.chart .grid{stroke:#eee} svg.chart .frame{fill:none;stroke:#333} svg.chart .title{font-size:14px}
#filmstrip{display:flex;gap:8px;overflow-x:auto;padding-bottom:6px}
#filmstrip figure{margin:0;text-align:center;font-size:12px} #filmstrip img{height:128px;image-rendering:pixelated;cursor:pointer}
#viewer{max-width:100%;width:512px;image-rendering:pixelated;border:1px solid #ccc;display:block}
#slider{width:512px;max-width:100%} pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
"""

# The slider over the sample grids. Without JavaScript the filmstrip alone shows every grid.
SLIDER_SCRIPT = """
(function () {
  var frames = document.querySelectorAll("#filmstrip img");
  var player = document.getElementById("player");
  if (!player || frames.length === 0) return;
  var viewer = document.getElementById("viewer"), slider = document.getElementById("slider");
  var caption = document.getElementById("viewer-step");
  function show(index) {
    viewer.src = frames[index].src;
    caption.textContent = frames[index].getAttribute("data-step");
    slider.value = String(index);
  }
  slider.max = String(frames.length - 1);
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  frames.forEach(function (frame, index) { frame.addEventListener("click", function () { show(index); }); });
  player.hidden = false;
  show(frames.length - 1);
  document.documentElement.setAttribute("data-slider", "ready");
})();
"""


# -- writing -----------------------------------------------------------------------------------------


def write_report(target: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write the report of the run or sweep folder ``target`` to ``out`` (default ``target/report.html``);
    a sweep also gets each run's own report. Returns the files written, the main report first."""
    target = Path(target)
    _check_target(target)
    out = Path(out) if out is not None else target / REPORT_NAME
    if holds_run(target):
        pages = {out: run_page(read_run(target))}
    else:
        sweep = read_sweep(target)
        if not sweep.runs:
            raise GankitError(
                f"{shortened(target)} holds no run: no config.toml or checkpoints folder in it or in any folder below it"
            )
        pages = sweep_pages(sweep, out)
    for path in pages:
        _check_out(path, overwrite=overwrite)
    from gankit.checkpoint import write_atomic

    for path, page in pages.items():
        try:
            write_atomic(path, page)
        except OSError as error:
            raise GankitError(f"cannot write {shortened(path)}: {error.strerror or error}") from None
    return list(pages)


def _check_target(target: Path) -> None:
    if not target.exists():
        raise GankitError(f"{shortened(target)} does not exist; give a run folder or a folder of runs (a sweep)")
    if not target.is_dir():
        raise GankitError(f"{shortened(target)} is a file; give a run folder or a folder of runs (a sweep)")


def _check_out(path: Path, *, overwrite: bool) -> None:
    shown = shortened(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise GankitError(f"--out {shown}: a report is an HTML file; give a name ending in .html")
    if path.is_dir():
        raise GankitError(f"--out {shown} is a folder; give a file name ending in .html")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise GankitError(f"{shown} already exists; pass --overwrite to replace it, or choose another --out")
    if not path.parent.is_dir():
        raise GankitError(f"cannot write {shown}: the folder {shortened(path.parent)} does not exist")


# -- the page ----------------------------------------------------------------------------------------


def page(title: str, body: Iterable[str]) -> str:
    """A complete HTML document; its policy lets the browser load nothing but data: images and the one
    inline script (by its hash), so a string that slipped through escaping could still not run or fetch."""
    digest = base64.b64encode(hashlib.sha256(SLIDER_SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        *body,
        f'<p class="missing">Written by gankit {escape(__version__)} on {time.strftime("%Y-%m-%d %H:%M:%S")}.</p>',
        f"<script>{SLIDER_SCRIPT}</script>",
        "</body></html>",
    ])


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], *, raw_columns: Iterable[int] = (),
          numeric: Iterable[int] = ()) -> str:
    """An HTML table; every cell is escaped except those in ``raw_columns`` (HTML this module made);
    ``numeric``: columns of numbers as text, aligned as numbers are."""
    raw, numbers = set(raw_columns), set(numeric)
    head = "".join(f"<th>{escape(str(name))}</th>" for name in header)
    body = []
    for row in rows:
        cells = (cell if index in raw else _cell(cell, index in numbers) for index, cell in enumerate(row))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any, numeric: bool = False) -> str:
    if numeric:
        return f'<td class="num">{escape(str(value))}</td>'
    if isinstance(value, float):
        return f'<td class="num">{escape(f"{value:.6g}")}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"<td>{escape(text)}</td>"


def notes_block(notes: list[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<div class="notes"><b>Missing or damaged:</b><ul>{items}</ul></div>'


# -- one run -----------------------------------------------------------------------------------------


def run_page(record: RunRecord) -> str:
    word, explanation = record.status()
    body = [
        f"<h1>gankit run {escape(record.folder.resolve().name)}</h1>",
        f'<p><span class="status {word}" id="status">{word}</span> {escape(explanation)}</p>',
        f"<p>Folder: <code>{escape(str(record.folder.resolve()))}</code></p>",
        notes_block(record.notes),
        "<h2>Samples over time</h2>", samples_section(record),
        "<h2>Curves</h2>", f'<div class="charts">{"".join(curves_section(record))}</div>',
        "<h2>Divergence and rollback events</h2>", events_section(record),
        "<h2>Checkpoints</h2>", checkpoints_section(record),
        "<h2>Plugins</h2>", plugins_section(record),
        "<h2>Resolved config</h2>", config_section(record.config),
    ]
    return page(f"gankit report: {record.folder.resolve().name}", body)


def samples_section(record: RunRecord) -> str:
    frames, skipped = [], []
    for step, path in _evenly_spaced(record.samples, MAX_GIF_FRAMES):
        uri = png_data_uri(path)
        if uri is None:
            skipped.append(path.name)
            continue
        frames.append(
            f'<figure><img src="{uri}" alt="samples at step {step}" data-step="step {step}">'
            f"<figcaption>step {step}</figcaption></figure>"
        )
    note = f'<p class="missing">Left out (not a readable PNG): {escape(", ".join(skipped))}</p>' if skipped else ""
    if not frames:
        return note + '<p class="missing">No sample grids (samples/step-*.png) in this run.</p>'
    player = ('<div id="player" hidden><input type="range" id="slider" min="0" value="0" aria-label="step"> '
              '<b id="viewer-step"></b><img id="viewer" alt="samples at the chosen step"></div>')
    shown = f"{len(frames)} of {len(record.samples)}" if len(record.samples) > len(frames) else f"{len(frames)}"
    return (f"<p>{shown} sample grids, at fixed noise. Drag the slider, or click a grid.</p>{player}"
            f'<div id="filmstrip">{"".join(frames)}</div>{note}')


def _evenly_spaced(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    keep = {round(index * (len(items) - 1) / (limit - 1)) for index in range(limit)}
    return [item for index, item in enumerate(items) if index in keep]


def png_data_uri(path: Path) -> str | None:
    """The PNG at ``path`` as a data: URI, or None when it is missing, too large or not a whole PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_IMAGE_BYTES:  # a FIFO would block the read
            return None
        data = path.read_bytes()
        with Image.open(path) as image:
            if image.format != "PNG":
                return None
            image.load()  # decodes every row: a truncated file fails here, not in the reader's browser
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def event_markers(record: RunRecord) -> list[Marker]:
    markers = []
    for event in record.events:
        action = str(event.get("action", "event"))
        markers.append(Marker(float(event["step"]), action, EVENT_COLOURS.get(action, "#555")))
    return markers


def _metric_points(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [(float(row["step"]), float(row[key])) for row in rows if finite(row.get(key))]


def curves_section(record: RunRecord) -> list[str]:
    """The losses, the other logged statistics, and each eval value (the best checkpoint marked)."""
    markers = event_markers(record)
    losses = [Series(key, _metric_points(record.metrics, key), f"#{r:02x}{g:02x}{b:02x}")
              for key, (r, g, b) in LOSS_SERIES]
    loss_keys = {key for key, _ in LOSS_SERIES}
    others = [key for key in dict.fromkeys(k for row in record.metrics for k in row)
              if key not in loss_keys and key not in ENGINE_VALUES and key != "step"]
    statistics_series = [Series(key, _metric_points(record.metrics, key), colour(index + 2))
                         for index, key in enumerate(["score_real", "score_fake", *others])]
    parts = [line_chart(losses, title="losses (averaged per logged interval)", markers=markers),
             line_chart(statistics_series, title="discriminator scores and loss statistics", markers=markers)]
    parts.extend(eval_charts(record, markers))
    return parts


def eval_charts(record: RunRecord, markers: list[Marker]) -> list[str]:
    if not record.evals:
        return ['<p class="missing">No evaluations (eval.jsonl): train with --eval-every N --metric NAME.</p>']
    key, _ = record.headline()
    names = [k for k in dict.fromkeys(k for row in record.evals for k in row) if k not in ("step", "metric")]
    metric = str(record.evals[-1].get("metric", "eval"))
    charts = []
    for index, name in enumerate(names):
        chart_markers = list(markers)
        best = record.best
        if best and best.get("metric") == name and finite(best.get("value")) and finite(best.get("step")):
            chart_markers.append(Marker(float(best["step"]), f"best.safetensors (step {best['step']})", "#000",
                                        value=float(best["value"])))
        title = f"{metric}: {name}" + (" (headline)" if name == key else "")
        charts.append(line_chart([Series(name, _metric_points(record.evals, name), colour(index))],
                                 title=title, markers=chart_markers))
    return charts


def events_section(record: RunRecord) -> str:
    if not record.events:
        return '<p class="missing">None: the divergence guard found nothing.</p>'
    columns = ["step", "event", "kind", "action", "detail", "to_step", "lr_factor", "since", "rollbacks"]
    return table(columns, ([event.get(name, "") for name in columns] for event in record.events))


def checkpoints_section(record: RunRecord) -> str:
    best_step = record.best.get("step") if record.best else None
    rows = []
    for step, path in record.checkpoints:
        mark = f"best {record.best.get('metric')} = {record.best.get('value')}" if step == best_step else ""
        rows.append([step, f"checkpoints/{path.name}", _size(path), mark])
    if not rows:
        return '<p class="missing">No checkpoints.</p>'
    return table(["step", "file", "size", "best"], rows)


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 1024:.0f} kB"
    except OSError:
        return "?"


def plugins_section(record: RunRecord) -> str:
    components = record.metadata.get("components")
    version = record.metadata.get("gankit_version", "?")
    if not isinstance(components, dict) or not components:
        return '<p class="missing">Unknown: no checkpoint records the components (see the config below).</p>'
    rows = []
    for kind, component in components.items():
        component = component if isinstance(component, dict) else {}
        rows.append([kind, component.get("name", "?"), component.get("plugin", "?"), component.get("version", "?")])
    return f"<p>gankit {escape(str(version))}</p>" + table(["component", "name", "plugin", "plugin version"], rows)


def config_section(config: dict[str, Any]) -> str:
    if not config:
        return '<p class="missing">No config: config.toml is missing and no checkpoint holds one.</p>'
    return table(["setting", "value"], ([key, value] for key, value in config.items()))


# -- a sweep -----------------------------------------------------------------------------------------


def sweep_pages(sweep: SweepRecord, out: Path) -> dict[Path, str]:
    """The sweep's page at ``out`` and each run's own report, which it links to."""
    records = [read_run(run, sweep.statuses.get(sweep.name(run), {})) for run in sweep.runs]
    run_reports = {record.folder: record.folder / REPORT_NAME for record in records}
    pages = {out: sweep_page(sweep, records, {run: _link(out, path) for run, path in run_reports.items()})}
    pages.update({run_reports[record.folder]: run_page(record) for record in records})
    return pages


def _link(out: Path, target: Path) -> str:
    relative = os.path.relpath(target.resolve(), out.resolve().parent)
    return quote(Path(relative).as_posix())


def sweep_page(sweep: SweepRecord, records: list[RunRecord], links: dict[Path, str]) -> str:
    """The table of ``gankit compare`` (the same groups and numbers, see gankit/compare.py), the curves per
    setting, and the sweep's plan and each run's last attempt from sweep.json and status.json."""
    from gankit.compare import summarize

    result = summarize(records)
    folder = sweep.folder
    body = [
        f"<h1>gankit sweep {escape(folder.resolve().name)}</h1>",
        f"<p>{len(records)} runs in {len(result['rows'])} settings. Folder: <code>{escape(str(folder.resolve()))}</code></p>",
        notes_block(sweep.notes + [f"{sweep.name(r.folder)}: {note}" for r in records for note in r.notes]),
        "<h2>Compare</h2>", compare_table(sweep, result, links),
        "<h2>Eval curves</h2>", overlaid_eval_charts(result),
        "<h2>The sweep</h2>", plan_section(sweep), "<h2>Runs</h2>", runs_section(sweep, records, links),
    ]
    return page(f"gankit sweep: {folder.resolve().name}", body)


def _run_link(sweep: SweepRecord, run: Path, links: dict[Path, str]) -> str:
    return f'<a href="{escape(links[run])}">{escape(sweep.name(run))}</a>'


def compare_table(sweep: SweepRecord, result: dict[str, Any], links: dict[Path, str]) -> str:
    """gankit compare's table, each row with its colour in the curves and a link to each of its runs' reports."""
    from gankit.compare import table_text

    text = table_text(result)
    rows = []
    for index, (row, cells) in enumerate(zip(result["rows"], text.rows)):
        swatch = f'<td><span class="swatch" style="background:{colour(index)}"></span></td>'
        run_links = " ".join(_run_link(sweep, Path(run["path"]), links) for run in row["run_details"])
        rows.append([swatch, *cells, f"<td>{run_links}</td>"])
    if not rows:
        return '<p class="missing">No run tells its setting (no config.toml, no readable checkpoint).</p>'
    numeric = range(text.numeric + 1, len(text.header) + 1)
    return (table(["", *text.header, "run reports"], rows, raw_columns=[0, len(text.header) + 1], numeric=numeric)
            + f"<p>{escape(text.caption)}</p>")


def overlaid_eval_charts(result: dict[str, Any]) -> str:
    """Per headline metric: each run's curve, thin, in its setting's colour (as in the compare table), and
    the setting's mean over its runs, thick."""
    from gankit.compare import mean_and_band

    by_key: dict[str, list[Series]] = {}
    for index, (row, curves) in enumerate(zip(result["rows"], result["curves"])):
        if row["key"] is None:
            continue
        series = by_key.setdefault(row["key"], [])
        for run, curve in zip(row["run_details"], curves):
            series.append(Series(Path(run["path"]).name, curve, colour(index), width=1.0, opacity=0.35))
        mean = [(step, value) for step, value, _, _ in mean_and_band(curves)]
        series.append(Series("mean", mean, colour(index), width=2.5))
    if not by_key:
        return '<p class="missing">No run has evaluations (eval.jsonl): sweep with --eval-every N --metric NAME.</p>'
    charts = (line_chart(series, title=f"{key}: each run (thin) and the mean per setting (thick)", legend=False)
              for key, series in by_key.items())
    return f'<div class="charts">{"".join(charts)}</div>'


def plan_section(sweep: SweepRecord) -> str:
    """sweep.json read: the grid, the seeds and the flags every run shares (any of them may be damaged)."""
    manifest = sweep.manifest
    if manifest is None:
        return '<p class="missing">No readable sweep.json: the runs are the run folders found below this folder.</p>'
    grid, seeds, base = manifest.get("grid"), manifest.get("seeds"), manifest.get("base")
    seeds_text = ", ".join(map(str, seeds)) if isinstance(seeds, list) else json.dumps(seeds, default=str)
    return "".join([
        f"<p>From sweep.json: {len(list(planned_runs(manifest)))} planned runs, seeds {escape(seeds_text)}.</p>",
        table(["grid setting", "values"], _listed(grid)), "<p>Shared by every run:</p>",
        table(["setting", "value"], _listed(base)) if base else '<p class="missing">nothing</p>',
    ])


def _listed(mapping: Any) -> list[list[Any]]:
    """A manifest's table as rows, lists joined with commas; a value that is not a table, as one row."""
    if not isinstance(mapping, dict):
        return [["(not a table)", mapping]]
    return [[key, ", ".join(map(str, value)) if isinstance(value, list) else value] for key, value in mapping.items()]


def runs_section(sweep: SweepRecord, records: list[RunRecord], links: dict[Path, str]) -> str:
    """Each run: its folder's status, and its last attempt as the sweep recorded it (status.json); a planned
    run that never wrote a run folder too."""
    by_name = {sweep.name(record.folder): record for record in records}
    planned = [name for name, _ in planned_runs(sweep.manifest)] if sweep.manifest else list(by_name)
    names = list(dict.fromkeys([*planned, *sweep.statuses]))
    rows = []
    for name in names:
        record, entry = by_name.get(name), sweep.statuses.get(name, {})
        wall = entry.get("wall_seconds")
        rows.append([
            f"<td>{_run_link(sweep, record.folder, links)}</td>" if record else f"<td>{escape(name)}</td>",
            record.status()[0] if record else "not started", entry.get("status", ""),
            f"{wall:.1f}" if finite(wall) else "", entry.get("error", ""),
        ])
    return table(["run", "run folder", "sweep's last attempt", "wall s", "error"], rows, raw_columns=[0], numeric=[3])
