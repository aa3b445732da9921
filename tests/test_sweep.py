"""gankit sweep: a grid over seeds as ordinary run folders, run N at a time, interrupted and run again to the
end exactly once; its commands for a cluster scheduler; a failing run recorded; bad grids refused up front."""
from __future__ import annotations

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gankit.cli import app

ROOT = Path(__file__).resolve().parent.parent
RING = ["--data", "ring", "--arch", "mlp:width=16,depth=1", "--batch-size", "64", "--device", "cpu",
        "--metric", "modes", "--eval-count", "256"]


def environment() -> dict[str, str]:
    # The children are `python -m gankit`: they must import this checkout too.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def gankit(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True, env=environment(),
                          timeout=600, **options)


def logged_steps(path: Path) -> list[int]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row["step"] for row in rows if "event" not in row]


def test_a_sweep_killed_half_way_and_run_again_finishes_every_run_exactly_once(tmp_path):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "gankit", "sweep", *RING, "--steps", "200", "--checkpoint-every", "50",
               "--eval-every", "100", "--log-every", "10", "--set", "loss=bce,hinge", "--seeds", "2", "--jobs", "2",
               "--out", str(folder)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
                             start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(folder.glob("*/seed-*/checkpoints/step-*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGINT)  # a Ctrl-C at the terminal: the sweep's process group
    out, err = first.communicate(timeout=300)
    assert first.returncode == 130, out + err
    assert [line for line in err.splitlines() if line.startswith("Interrupted:")] == [err.strip().splitlines()[-1]]
    assert "Traceback" not in err
    names = ["loss=bce/seed-0", "loss=bce/seed-1", "loss=hinge/seed-0", "loss=hinge/seed-1"]
    unfinished = [folder / name for name in names if not (folder / name / "checkpoints" / "step-0000200.safetensors").exists()]
    assert len(unfinished) >= 2, "the interrupt came too late: the second pair of runs had started"
    resumable = [run.relative_to(folder).as_posix() for run in unfinished if list((run / "checkpoints").glob("step-*"))]

    second = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    for name in resumable:  # continued from its checkpoint, not trained again from the start
        assert f"{name}: resuming" in second.stdout, second.stdout
    runs = sorted(folder.glob("*/seed-*"))
    assert [run.relative_to(folder).as_posix() for run in runs] == names
    for run in runs:
        assert logged_steps(run / "metrics.jsonl") == list(range(10, 201, 10)), run  # no step logged twice
        assert logged_steps(run / "eval.jsonl") == [100, 200], run
        assert (run / "checkpoints" / "step-0000200.safetensors").is_file()
    statuses = json.loads((folder / "status.json").read_text())
    assert {entry["status"] for entry in statuses.values()} == {"finished"}

    compared = gankit("compare", "--json", str(folder))
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert result["columns"] == ["loss"]
    assert [(row["setting"], row["seeds"], row["finished"]) for row in result["rows"]] == [
        ({"loss": "bce"}, [0, 1], 2), ({"loss": "hinge"}, [0, 1], 2)]
    for row in result["rows"]:
        name = row["setting"]["loss"]
        curves = [[json.loads(line)["modes"] for line in (folder / f"loss={name}" / f"seed-{seed}" / "eval.jsonl")
                   .read_text().splitlines()] for seed in (0, 1)]
        finals, bests = [curve[-1] for curve in curves], [max(curve) for curve in curves]
        assert row["key"] == "modes" and row["higher_is_better"]
        assert row["final"] == {"mean": statistics.fmean(finals), "std": statistics.stdev(finals), "n": 2}
        assert row["best"] == {"mean": statistics.fmean(bests), "std": statistics.stdev(bests), "n": 2}


def test_printed_commands_run_as_they_are_and_compare_reads_their_runs(tmp_path):
    folder = tmp_path / "sweep"
    printed = gankit("sweep", *RING, "--steps", "20", "--eval-every", "10", "--set", "reg=none",
                     "--print-commands", "--out", str(folder))
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gankit run ")
    assert not list(folder.glob("*/seed-*")), "--print-commands ran something"
    # `gankit` on the PATH may be another checkout: the same arguments through this one's `python -m gankit`.
    ran = gankit(*shlex.split(lines[0])[1:])
    assert ran.returncode == 0, ran.stderr
    run = folder / "reg=none" / "seed-0"
    assert 'reg = []' in (run / "config.toml").read_text()  # none: not ring's recommended r1
    again = gankit("sweep", *RING, "--steps", "20", "--eval-every", "10", "--set", "reg=none", "--print-commands",
                   "--out", str(folder))
    assert again.returncode == 0 and again.stdout == ""  # nothing left to run
    compared = json.loads(gankit("compare", "--json", str(folder)).stdout)
    assert [row["seeds"] for row in compared["rows"]] == [[0]]
    assert compared["rows"][0]["final"]["mean"] == json.loads((run / "eval.jsonl").read_text().splitlines()[-1])["modes"]


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path):
    folder = tmp_path / "sweep"
    # The modes metric scores 2-D samples: on digits it fails when the run builds it, not before.
    result = gankit("sweep", "--arch", "mlp:width=16,depth=1", "--batch-size", "64", "--device", "cpu", "--steps", "10",
                    "--metric", "modes", "--eval-every", "10", "--eval-count", "256",
                    "--set", "data=ring,digits:count=256", "--jobs", "2", "--out", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 1 runs failed (data=digits:count=256/seed-0)")
    statuses = json.loads((folder / "status.json").read_text())
    assert statuses["data=ring/seed-0"]["status"] == "finished"
    failed = statuses["data=digits:count=256/seed-0"]
    assert failed["status"] == "failed" and failed["error"] and "\n" not in failed["error"]
    assert "Traceback" not in failed["error"]
    assert (folder / "data=ring" / "seed-0" / "checkpoints" / "step-0000010.safetensors").is_file()
    assert "gankit compare" in result.stdout  # the table is printed before the error


runner = CliRunner()


@pytest.mark.parametrize("grid, fragment", [
    (["--set", "los=bce,hinge"], "did you mean 'loss'"),
    (["--set", "batch-size=64,abc"], "batch-size must be int"),
    (["--set", "loss=bce,hingee"], "hingee"),
    (["--set", "arch=mlp:width=16,depth=1;mlp:widht=8"], "widht"),
    (["--set", "seed=1,2"], "--seeds"),
    (["--set", "lr=0.1,-1"], "lr must be positive"),
    (["--set", "loss"], "expected KEY=VALUE"),
    (["--set", "loss=bce,bce"], "given twice"),
    (["--loss", "bce", "--set", "loss=hinge"], "give loss once"),
    (["--set", "compile=maybe"], "on or off"),
])
def test_a_bad_grid_is_one_error_line_before_anything_runs(tmp_path, grid, fragment):
    folder = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--data", "ring", *grid, "--out", str(folder)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output
    assert not folder.exists()


def test_another_grid_in_the_same_folder_is_refused(tmp_path):
    folder = tmp_path / "sweep"
    first = runner.invoke(app, ["sweep", "--data", "ring", "--set", "loss=bce,hinge", "--print-commands", "--out", str(folder)])
    assert first.exit_code == 0, first.output
    manifest = (folder / "sweep.json").read_text()
    for changed in (["--set", "loss=bce,least-squares"], ["--set", "loss=bce,hinge", "--steps", "5"],
                    ["--set", "loss=bce,hinge", "--seeds", "2"]):
        result = runner.invoke(app, ["sweep", "--data", "ring", *changed, "--print-commands", "--out", str(folder)])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and "holds another sweep" in lines[0], result.output
    assert (folder / "sweep.json").read_text() == manifest
    # --jobs and --threads say how fast, not what: the same sweep.
    same = runner.invoke(app, ["sweep", "--data", "ring", "--set", "loss=bce,hinge", "--threads", "2", "--jobs", "3",
                               "--print-commands", "--out", str(folder)])
    assert same.exit_code == 0, same.output


def test_run_folders_are_named_by_their_setting_and_commands_carry_every_value(tmp_path):
    from gankit.sweep import plan_runs, run_arguments

    runs = plan_runs(tmp_path, {"loss": ["bce"], "reg": ["none", "clip+gp"], "compile": ["false"]}, {"steps": 5}, [0, 1])
    assert [run.name for run in runs] == [
        "loss=bce,reg=none,compile=false/seed-0", "loss=bce,reg=none,compile=false/seed-1",
        "loss=bce,reg=clip+gp,compile=false/seed-0", "loss=bce,reg=clip+gp,compile=false/seed-1"]
    assert run_arguments(runs[2].values) == [
        "--steps", "5", "--loss", "bce", "--reg", "clip", "--reg", "gp", "--no-compile", "--seed", "0",
        "--out", str(tmp_path / runs[2].name)]
    assert "--reg none" in " ".join(run_arguments(runs[0].values))


def test_reg_none_is_no_regularizer_even_where_the_data_recommends_one():
    from gankit.config import RunConfig

    config = RunConfig.from_sources(None, {"reg": ["none"], "data": "ring"})
    assert config.reg == [] and "reg" in config.user_set  # so ring's recommended r1 is not applied


def test_a_run_another_process_is_writing_is_waited_for_not_run_twice(tmp_path):
    from gankit.runfolder import RunFolderLock, lock_holder

    folder = tmp_path / "sweep"
    run = folder / "loss=bce" / "seed-0"
    lock = RunFolderLock(run).acquire()  # as another sweep's child holds it while it trains
    assert lock_holder(run) == f"PID {os.getpid()}"
    sweep = subprocess.Popen([sys.executable, "-m", "gankit", "sweep", *RING, "--steps", "10", "--set", "loss=bce",
                              "--out", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment())
    lines = []
    for line in sweep.stdout:
        lines.append(line)
        if "waiting" in line:
            break
    assert lines[-1].strip() == f"loss=bce/seed-0: waiting, another gankit process (PID {os.getpid()}) is running it"
    assert not (run / "config.toml").exists()
    lock.release()
    assert lock_holder(run) is None
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out + err
    assert "loss=bce/seed-0: starting" in out and (run / "checkpoints" / "step-0000010.safetensors").is_file()
