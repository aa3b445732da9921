"""gankit report: one self-contained HTML file per run or sweep, checked as text (nothing fetched, every run
string escaped) and in a real browser (headless Chromium: no console errors, the samples and the plots drawn)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from typer.testing import CliRunner

from gankit.cli import app

TINY_IMAGES = ["--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "4",
               "--z-dim", "16", "--device", "cpu", "--quiet", "--sample-every", "2", "--log-every", "1",
               "--eval-every", "2", "--metric", "swd", "--eval-count", "64"]
TINY_RING = ["--data", "ring", "--batch-size", "16", "--steps", "4", "--device", "cpu", "--quiet",
             "--sample-every", "2", "--log-every", "1", "--eval-every", "2", "--metric", "modes"]
HOSTILE = "</script><img src=x onerror=alert(1)><script>alert(2)</script>"
WINDOW = (1200, 3000)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def train(out: Path, *flags: str) -> Path:
    result = invoke("run", *flags, "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    run = train(tmp_path_factory.mktemp("report") / "digits-run", *TINY_IMAGES)
    # A hostile value in the config and in a logged key: the report must show them as text.
    with (run / "config.toml").open("a", encoding="utf-8") as handle:
        handle.write(f"note = {json.dumps(HOSTILE)}\n")
    return run


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("report") / "ring-run", *TINY_RING)


def report(folder: Path, *extra: str) -> Path:
    result = invoke("report", str(folder), *extra)
    assert result.exit_code == 0, result.output
    return folder / "report.html" if "--out" not in extra else Path(extra[extra.index("--out") + 1])


# -- the HTML as text ----------------------------------------------------------------------------------


class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parsed(html: str) -> list[tuple[str, dict[str, str | None]]]:
    tags = Tags()
    tags.feed(html)
    return tags.tags


def assert_offline(html: str) -> None:
    """Nothing the browser would fetch: no <link>, no <script src>, images only as data: URIs, links only
    relative, no CSS url() or @import, and a policy that forbids any other load."""
    tags = parsed(html)
    assert not [tag for tag, _ in tags if tag in ("link", "iframe", "object", "embed", "base")]
    for tag, attrs in tags:
        assert "src" not in attrs or (tag == "img" and attrs["src"].startswith("data:image/png;base64,")), (tag, attrs)
        href = attrs.get("href") or ""
        assert not re.match(r"[a-z][a-z0-9+.-]*:|//", href, re.I), href  # relative links only
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert not re.search(r"url\s*\(|@import|https?://", html, re.I)
    policy = [attrs["content"] for tag, attrs in tags if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policy and policy[0].startswith("default-src 'none'; img-src data:;")


def test_a_run_report_shows_the_run_offline_and_escapes_what_the_run_wrote(image_run):
    html = report(image_run).read_text(encoding="utf-8")
    assert_offline(html)
    assert HOSTILE not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert html.count("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") == 1  # shown, as text
    assert [tag for tag, _ in parsed(html)].count("script") == 1
    assert 'class="status finished"' in html and "trained all 4 steps" in html
    assert html.count("<figure><img src=\"data:image/png;base64,") == 2  # the grids of steps 2 and 4
    assert html.count('<svg class="chart"') >= 3  # losses, statistics, eval values
    assert "best.safetensors (step" in html  # the best checkpoint marked on its eval curve
    for name in ("dcgan", "losses", "digits", "0.1.0"):
        assert f"<td>{name}</td>" in html  # the plugins that made the run, with their versions
    assert "checkpoints/step-0000004.safetensors" in html


def test_a_ring_run_report_shows_its_scatter_plots(ring_run):
    html = report(ring_run).read_text(encoding="utf-8")
    assert_offline(html)
    images = re.findall(r'<figure><img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2
    embedded = base64.b64decode(images[-1])
    assert embedded == (ring_run / "samples" / "step-0000004.png").read_bytes()


# -- status, events and damage ---------------------------------------------------------------------------


def copy_run(run: Path, folder: Path) -> Path:
    copy = folder / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report.html", ".gankit.lock"))
    return copy


def test_the_status_says_interrupted_or_diverged_and_events_go_on_the_timeline(ring_run, tmp_path):
    run = copy_run(ring_run, tmp_path)
    (run / "checkpoints" / "step-0000004.safetensors").unlink()
    html = report(run).read_text(encoding="utf-8")
    assert 'class="status interrupted"' in html and "newest checkpoint is step 2" in html

    events = [{"step": 3, "event": "divergence", "kind": "nonfinite", "detail": "d_loss is nan", "action": "rollback",
               "rollbacks": 1, "to_step": 2, "lr_factor": 0.5},
              {"step": 4, "event": "divergence", "kind": "nonfinite", "detail": "g_loss is <inf>", "action": "stop",
               "rollbacks": 3}]
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(event) + "\n" for event in events))
    html = report(run, "--overwrite").read_text(encoding="utf-8")
    assert 'class="status diverged"' in html and "stopped at step 4: g_loss is &lt;inf&gt;" in html
    charts = re.findall(r'<svg class="chart".*?</svg>', html, re.S)
    assert all(">rollback</text>" in chart and ">stop</text>" in chart for chart in charts)
    assert "<td>d_loss is nan</td>" in html  # the events table


def test_a_run_another_process_is_writing_is_reported_as_running(ring_run, tmp_path):
    import fcntl

    run = copy_run(ring_run, tmp_path)
    descriptor = os.open(run / ".gankit.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # as a training process holds it (gankit/runfolder.py)
        assert 'class="status running"' in report(run).read_text(encoding="utf-8")
    finally:
        os.close(descriptor)
    assert 'class="status finished"' in report(run, "--overwrite").read_text(encoding="utf-8")


def test_damaged_logs_and_missing_files_are_named_in_the_report(ring_run, tmp_path):
    run = copy_run(ring_run, tmp_path)
    with (run / "metrics.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"step": 5, "d_loss": 0.\n[1, 2]\n')
    (run / "config.toml").unlink()
    (run / "samples" / "step-0000002.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    html = report(run).read_text(encoding="utf-8")
    assert "metrics.jsonl: 2 damaged lines skipped" in html
    assert "config.toml is missing; the settings shown come from the newest checkpoint" in html
    assert "Left out (not a readable PNG): step-0000002.png" in html
    assert "<td>toy2d:ring</td>" in html  # the config, read from the checkpoint


@pytest.mark.parametrize("case", ["missing", "file", "empty", "exists", "not html", "out folder missing"])
def test_bad_input_is_one_error_line(ring_run, tmp_path, case):
    target, extra = ring_run, []
    if case == "missing":
        target = tmp_path / "nowhere"
    elif case == "file":
        target = ring_run / "config.toml"
    elif case == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "exists":
        extra = ["--out", str(tmp_path / "r.html")]
        (tmp_path / "r.html").write_text("mine")
    elif case == "not html":
        extra = ["--out", str(tmp_path / "r.png")]
    else:
        extra = ["--out", str(tmp_path / "no" / "r.html")]
    result = invoke("report", str(target), *extra)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    if case == "exists":
        assert (tmp_path / "r.html").read_text() == "mine"
        assert "--overwrite" in lines[0]


# -- a sweep -------------------------------------------------------------------------------------------


SWEEP_RUNS = {"runs/bce-seed0": ("bce", 0), "runs/bce-seed1": ("bce", 1), "runs/hinge-seed0": ("hinge", 0),
              "runs/hinge-seed1": ("hinge", 1)}
WALL_SECONDS = {"runs/bce-seed0": 10.0, "runs/bce-seed1": 14.5, "runs/hinge-seed0": 12.0}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Three of the four runs a sweep.json plans (as gankit/sweep.py writes it), the fourth never started;
    status.json with wall times and a failed attempt's error. One bce run logs every 2 steps, which names no
    setting (gankit compare's rule): the bce runs stay one setting."""
    folder = tmp_path_factory.mktemp("sweep")
    for name, (loss, seed) in list(SWEEP_RUNS.items())[:3]:
        extra = ["--log-every", "2"] if name == "runs/bce-seed1" else []
        train(folder / name, *TINY_RING, "--loss", loss, "--seed", str(seed), *extra)
    manifest = {"gankit_sweep": 1, "grid": {"loss": ["bce", "hinge"]}, "seeds": [0, 1], "base": {"note": HOSTILE},
                "runs": [{"name": name, "settings": {"loss": loss}, "seed": seed} for name, (loss, seed) in SWEEP_RUNS.items()]}
    (folder / "sweep.json").write_text(json.dumps(manifest))
    statuses = {name: {"status": "finished", "wall_seconds": seconds} for name, seconds in WALL_SECONDS.items()}
    statuses["runs/hinge-seed1"] = {"status": "failed", "error": HOSTILE}
    (folder / "status.json").write_text(json.dumps(statuses))
    return folder


def headline_values(run: Path) -> list[float]:
    return [json.loads(line)["modes"] for line in (run / "eval.jsonl").read_text().splitlines()]


def cell_texts(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_a_sweep_report_shows_the_compare_table_and_links_each_runs_report(sweep):
    from gankit.compare import comparison, table_text

    html = report(sweep).read_text(encoding="utf-8")
    assert_offline(html)
    assert HOSTILE not in html
    rows = re.findall(r"<tr><td><span class=\"swatch\".*?</tr>", html)
    expected = table_text(comparison([sweep]))  # what `gankit compare` prints, cell for cell
    assert expected.header == ["loss", "seeds", "final modes", "best modes", "img/s", "wall s", "diverged"]
    assert [[unescape(cell) for cell in cell_texts(row)[1:-1]] for row in rows] == expected.rows
    bce = cell_texts(rows[0])
    assert bce[1:3] == ["bce", "0,1"]  # log_every differs between the two, yet they are one setting
    finals = [headline_values(sweep / f"runs/bce-seed{seed}")[-1] for seed in (0, 1)]
    assert bce[3] == f"{statistics.fmean(finals):.4g} ± {statistics.stdev(finals):.4g}"
    assert bce[6] == f"{statistics.fmean([10.0, 14.5]):.1f} ± {statistics.stdev([10.0, 14.5]):.1f}"  # status.json
    links = re.findall(r'<a href="([^"]+)">', html)
    assert sorted(set(links)) == [f"runs/{name}/report.html" for name in ("bce-seed0", "bce-seed1", "hinge-seed0")]
    for link in set(links):
        assert_offline((sweep / link).read_text(encoding="utf-8"))
    assert '<svg class="chart"' in html


def test_a_sweep_report_reads_the_sweep_plan_and_each_runs_last_attempt(sweep):
    html = report(sweep, "--out", str(sweep / "plan.html"), "--overwrite").read_text(encoding="utf-8")
    assert "From sweep.json: 4 planned runs, seeds 0, 1." in html
    assert "<tr><td>loss</td><td>bce, hinge</td></tr>" in html  # the grid
    assert html.count("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") == 2  # the shared flag and the error
    runs = {cell_texts(row)[0]: cell_texts(row)[1:] for row in re.findall(r"<tr><td>.*?</tr>", html.split("<h2>Runs</h2>")[1])}
    assert runs["runs/bce-seed1"] == ["finished", "finished", "14.5", ""]
    assert runs["runs/hinge-seed1"][:3] == ["not started", "failed", ""]


def test_a_damaged_sweep_json_is_a_note_and_the_runs_below_are_still_reported(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("*.html", ".gankit.lock"))
    (copy / "sweep.json").write_text('{"grid": ')
    html = report(copy).read_text(encoding="utf-8")
    assert "sweep.json cannot be read as a sweep manifest" in html
    assert len(re.findall(r"<tr><td><span class=\"swatch\"", html)) == 2
    # A manifest naming a run outside its folder: left out, and no report written there.
    outside = copy_run(sweep / "runs" / "bce-seed0", tmp_path / "elsewhere")
    (copy / "sweep.json").write_text(json.dumps({"runs": [{"name": "../elsewhere/copy"}, {"name": "runs/bce-seed0"}]}))
    html = report(copy, "--overwrite").read_text(encoding="utf-8")
    assert "names a run outside the sweep folder (&#x27;../elsewhere/copy&#x27;), which is not read" in html and not (outside / "report.html").exists()


# -- in a real browser ---------------------------------------------------------------------------------

# Run only in the test's copy of a report: it writes where the samples and plots are into the DOM.
LAYOUT_SCRIPT = """
var found = [];
document.querySelectorAll("#viewer, #filmstrip img, svg.chart").forEach(function (element) {
  var box = element.getBoundingClientRect();
  found.push({name: element.id || element.tagName, x: box.left, y: box.top, width: box.width, height: box.height});
});
var pre = document.createElement("pre"); pre.id = "layout"; pre.textContent = JSON.stringify(found);
document.body.appendChild(pre);
"""


def chromium(page: Path, folder: Path, *mode: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (.ci/run installs Debian's chromium where apt is available)")
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # a fetch that slipped through would fail, and log an error
        f"--user-data-dir={folder / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--force-device-scale-factor=1", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", *mode, page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def render(page: Path, folder: Path) -> tuple[Image.Image, list[dict], str]:
    """The screenshot, the boxes of the samples and plots, and the DOM after scripts ran; fails on any
    console message."""
    screenshot = folder / "screenshot.png"
    shown = chromium(page, folder, f"--screenshot={screenshot}")
    assert screenshot.is_file(), shown.stderr[-2000:]
    assert console_lines(shown) == []
    measured = folder / "measured.html"
    digest = base64.b64encode(hashlib.sha256(LAYOUT_SCRIPT.encode()).digest()).decode()
    html = page.read_text(encoding="utf-8").replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    measured.write_text(html.replace("</body>", f"<script>{LAYOUT_SCRIPT}</script></body>"), encoding="utf-8")
    dumped = chromium(measured, folder, "--dump-dom")
    assert console_lines(dumped) == []
    layout = re.search(r'<pre id="layout">(.*?)</pre>', dumped.stdout, re.S)
    assert layout, dumped.stdout[-2000:]
    with Image.open(screenshot) as image:
        return image.convert("L"), json.loads(layout.group(1).replace("&quot;", '"')), dumped.stdout


def visible_spread(screenshot: Image.Image, box: dict) -> float:
    """The pixel standard deviation in ``box`` (0 for a blank region)."""
    region = (round(box["x"]), round(box["y"]), round(box["x"] + box["width"]), round(box["y"] + box["height"]))
    return ImageStat.Stat(screenshot.crop(region)).stddev[0]


def on_screen(box: dict) -> bool:
    return box["width"] > 10 and box["height"] > 10 and box["y"] + box["height"] <= WINDOW[1]


def test_the_console_check_sees_a_page_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('seen');</script></body></html>")
    assert any('"seen"' in line for line in console_lines(chromium(page, tmp_path, "--dump-dom")))


@pytest.mark.parametrize("which", ["image_run", "ring_run"])
def test_a_run_report_renders_in_chromium_with_its_samples_and_plots(which, request, tmp_path):
    run = request.getfixturevalue(which)
    page = report(run, "--out", str(tmp_path / "report.html"))
    screenshot, boxes, dom = render(page, tmp_path)
    assert 'data-slider="ready"' in dom  # the slider's script ran
    assert "onerror" not in dom.replace("onerror=alert(1)&gt;", "")
    shown = [box for box in boxes if on_screen(box)]
    assert [box["name"] for box in shown].count("viewer") == 1
    assert sum(box["name"] == "IMG" for box in shown) == 2
    assert sum(box["name"] == "svg" for box in shown) >= 3
    for box in shown:
        assert visible_spread(screenshot, box) > 5, box  # drawn, not a blank region
    blank = {"name": "top margin", "x": 0, "y": 0, "width": 1100, "height": 20}
    assert visible_spread(screenshot, blank) < 1  # the measure tells blank from drawn


def test_a_sweep_report_renders_in_chromium(sweep, tmp_path):
    page = report(sweep, "--out", str(tmp_path / "sweep.html"), "--overwrite")
    screenshot, boxes, _ = render(page, tmp_path)
    charts = [box for box in boxes if box["name"] == "svg" and on_screen(box)]
    assert charts and all(visible_spread(screenshot, box) > 5 for box in charts)
