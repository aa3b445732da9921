"""gankit compare: runs grouped by setting, mean ± std over seeds read from each run's eval.jsonl; the same data as
JSON and CSV; the curves drawn with a band; runs without evaluations still listed; a folder that is no run refused."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import gankit
from gankit.cli import app

runner = CliRunner()
RING = {"data": "ring", "arch": "mlp:width=16,depth=1", "batch_size": 64, "steps": 20, "device": "cpu",
        "metric": "modes", "eval_every": 10, "eval_count": 256, "log_every": 5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    folders = {}
    for loss in ("bce", "hinge"):
        for seed in (0, 1):
            folders[loss, seed] = gankit.train({**RING, "loss": loss, "seed": seed}, root / f"{loss}-{seed}")
    plain = {key: value for key, value in RING.items() if key not in ("metric", "eval_every", "eval_count")}
    folders["plain", 0] = gankit.train({**plain, "loss": "bce"}, root / "plain")
    return folders


def compare(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


def modes(folder) -> list[float]:
    return [json.loads(line)["modes"] for line in (folder / "eval.jsonl").read_text().splitlines()]


def test_json_groups_runs_by_setting_with_mean_and_std_over_seeds_of_their_eval_logs(runs):
    result = compare("--json", *(runs[key] for key in [("bce", 0), ("bce", 1), ("hinge", 0), ("hinge", 1)]))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["columns"] == ["loss"]
    assert [(row["setting"], row["seeds"], row["runs"], row["finished"]) for row in data["rows"]] == [
        ({"loss": "bce"}, [0, 1], 2, 2), ({"loss": "hinge"}, [0, 1], 2, 2)]
    for row in data["rows"]:
        curves = [modes(runs[row["setting"]["loss"], seed]) for seed in (0, 1)]
        finals, bests = [curve[-1] for curve in curves], [max(curve) for curve in curves]  # modes: higher is better
        assert row["final"] == {"mean": statistics.fmean(finals), "std": statistics.stdev(finals), "n": 2}
        assert row["best"] == {"mean": statistics.fmean(bests), "std": statistics.stdev(bests), "n": 2}
        assert row["img_per_s"]["n"] == 2 and row["img_per_s"]["mean"] > 0
        assert row["divergence_events"] == 0 and row["wall_seconds"]["n"] == 0  # wall time: recorded by sweeps


def test_a_run_without_evaluations_gets_a_row_with_empty_metric_columns(runs):
    result = compare("--csv", runs["bce", 0], runs["plain", 0])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 2
    assert rows[0]["final_mean"] == str(modes(runs["bce", 0])[-1]) and rows[0]["final_n"] == "1"
    assert rows[1]["final_mean"] == "" and rows[1]["best_mean"] == "" and rows[1]["final_n"] == "0"
    assert rows[1]["metric"] == "" and float(rows[1]["img_per_s_mean"]) > 0
    table = compare(runs["bce", 0], runs["plain", 0])
    assert table.exit_code == 0 and "gankit compare: 2 runs, 2 settings" in table.output


def test_csv_and_json_give_the_same_numbers(runs):
    folders = [runs[key] for key in [("bce", 0), ("bce", 1), ("hinge", 0), ("hinge", 1)]]
    data = json.loads(compare("--json", *folders).output)
    rows = list(csv.DictReader(io.StringIO(compare("--csv", *folders).output)))
    for row, line in zip(data["rows"], rows):
        assert line["loss"] == row["setting"]["loss"] and line["seeds"] == "0 1"
        for name in ("final", "best"):
            assert float(line[f"{name}_mean"]) == row[name]["mean"] and float(line[f"{name}_std"]) == row[name]["std"]


def test_plot_draws_a_line_and_band_per_setting(runs, tmp_path):
    path = tmp_path / "curves.png"
    result = compare(*(runs[key] for key in [("bce", 0), ("bce", 1), ("hinge", 0), ("hinge", 1)]), "--plot", path)
    assert result.exit_code == 0, result.output
    with Image.open(path) as image:
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 20)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # each setting's mean line


def test_a_folder_of_runs_without_sweep_json_is_compared_like_a_sweep(runs):
    """The runs below a folder are found as gankit report finds them (gankit/rundata.py)."""
    result = compare("--json", runs["bce", 0].parent)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert sorted((row["config"]["loss"], row["metric"] or "", row["seeds"]) for row in rows) == [
        ("losses:bce", "", [0]), ("losses:bce", "metrics:modes", [0, 1]), ("losses:hinge", "metrics:modes", [0, 1])]


def test_fifos_named_like_run_files_are_not_read(runs, tmp_path):
    """A FIFO blocks a plain read forever: config.toml, eval.jsonl and a checkpoint that are FIFOs are left out
    (the setting then comes from the newest checkpoint that is a file), not waited on."""
    run = tmp_path / "run"
    shutil.copytree(runs["bce", 0], run)
    for name in ("config.toml", "eval.jsonl", "checkpoints/step-0000020.safetensors"):
        (run / name).unlink()
        os.mkfifo(run / name)
    shutil.copy(runs["bce", 0] / "checkpoints" / "step-0000020.safetensors", run / "checkpoints" / "step-0000010.safetensors")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    result = subprocess.run([sys.executable, "-m", "gankit", "compare", "--json", str(run)], capture_output=True,
                            text=True, env=environment, timeout=300)  # a guard: a blocked read would hang here
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["rows"][0]
    assert row["config"]["loss"] == "losses:bce" and row["final"]["n"] == 0


@pytest.mark.parametrize("make", ["empty", "file", "missing", "damaged sweep.json"])
def test_a_folder_that_is_neither_a_run_nor_a_sweep_is_one_error_line(tmp_path, make):
    path = tmp_path / "thing"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("x")
    elif make == "damaged sweep.json":
        path.mkdir()
        (path / "sweep.json").write_text('{"runs": ')
    result = compare(path)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
