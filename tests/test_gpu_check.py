"""benchmarks/gpu_check.py in its CPU mode: every part runs (or records why not), and one part that fails or
hangs is recorded without stopping the others. The figures themselves are for a GPU (docs/performance.md)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def run_check(tmp_path: Path, *args: str, fault: str = "") -> dict:
    out = tmp_path / "results.json"
    env = {**os.environ, "GANKIT_THREADS": "1", "PYTHONWARNINGS": "ignore", gpu_check.FAULT_VARIABLE: fault,
           "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out), *args],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "written to" in result.stdout  # the table was printed
    return json.loads(out.read_text())


def numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def assert_recorded(record: dict) -> None:
    """A part either brought finite figures or says why it did not."""
    if record["status"] == "ok":
        assert all(math.isfinite(n) for n in numbers(record["figures"])), record
        for row in record["figures"].get("rows", []):
            assert any(key in row for key in ("img_per_s", "ratio", "error", "skipped")), row
    else:
        assert record["status"] in ("failed", "timed out") and record["reason"], record


def test_cpu_quick_check_records_every_part(tmp_path):
    report = run_check(tmp_path)
    assert set(report["parts"]) == set(gpu_check.PARTS)
    assert report["device"] == "cpu" and report["torch"] and report["device_name"].startswith("cpu")
    assert report["bf16_peak_tflops"] is None  # no peak for a CPU: no share of it is claimed
    for record in report["parts"].values():
        assert_recorded(record)
    assert any(record["status"] == "ok" for record in report["parts"].values())
    bench = report["parts"]["bench"]
    if bench["status"] == "ok":
        variants = {row["variant"] for row in bench["figures"]["rows"]}
        assert variants == set(gpu_check.VARIANTS)
    correctness = report["parts"]["correctness"]
    if correctness["status"] == "ok":
        assert set(correctness["figures"]["runs"]) == {"fp32", "bf16"}
        assert correctness["figures"]["score_tolerance"] == gpu_check.SCORE_TOLERANCE
    ddp = report["parts"]["ddp"]
    if ddp["status"] == "ok":  # the one-rank group really joined, with the CPU backend
        assert ddp["figures"]["backend"] == "gloo" and ddp["figures"]["wrapped_in_ddp"] == "DistributedDataParallel"
    assert set(report["goal"]) >= {"img_per_s_met", "ratio_met", "peak_fraction_met"}


def test_a_failing_and_a_hanging_part_are_recorded_and_the_others_run(tmp_path):
    report = run_check(tmp_path, "--parts", "bench,plain_loop,ddp", "--time-limit", "plain_loop=3",
                       fault="bench:fail,plain_loop:hang")
    bench, plain_loop = report["parts"]["bench"], report["parts"]["plain_loop"]
    assert bench["status"] == "failed" and bench["exit_code"] == 3
    assert any("injected fault in part bench" in line for line in bench["stderr_tail"])
    assert plain_loop["status"] == "timed out" and plain_loop["reason"] == "timed out after 3 s"
    assert report["parts"]["correctness"]["status"] == "not run"
    assert_recorded(report["parts"]["ddp"])
    assert report["parts"]["ddp"]["status"] != "not run"


def test_the_bf16_peak_comes_from_the_device_name():
    peak, source = gpu_check.bf16_peak("NVIDIA H200")
    assert peak == 989.4 and "H200" in source
    assert gpu_check.bf16_peak("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu_check.bf16_peak("Some Future GPU") == (None, None)
