"""The gankit command line, through Typer's CliRunner and as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest
from typer.testing import CliRunner

from gankit import __version__
from gankit.cli import app

runner = CliRunner()

TINY_FLAGS = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "4",
    "--z-dim", "16", "--sample-every", "2", "--checkpoint-every", "2", "--device", "cpu", "--quiet",
]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_does_not_import_torch():
    code = "import sys, gankit.cli; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"gankit {__version__}"


def test_list_plugins_table_and_json():
    result = invoke("list-plugins")
    assert result.exit_code == 0
    for text in ("dcgan", "bce", "digits", "anime", "builtin"):
        assert text in result.output
    result = invoke("list-plugins", "--json")
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["dcgan"]["provides"] == {"architecture": ["dcgan"]}
    assert plugins["dcgan"]["source"] == "builtin" and plugins["dcgan"]["status"] == "ok"


def test_run_then_sample(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", *TINY_FLAGS, "--out", str(out))
    assert result.exit_code == 0, result.output
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["steps"] == 4 and config["arch"] == "dcgan:dcgan:width=8" and config["loss"] == "losses:bce"
    grid = tmp_path / "grid.png"
    result = invoke("sample", str(out / "checkpoints" / "step-0000004.safetensors"), "-n", "16", "--out", str(grid))
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(grid) as image:
        assert image.size == (4 * 34 + 2, 4 * 34 + 2)  # 4x4 grid of 32 px with 2 px padding
    # A run folder stands for its newest checkpoint.
    assert invoke("sample", str(out), "-n", "4", "--out", str(tmp_path / "g2.png")).exit_code == 0


def test_config_file_with_flag_override(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('steps = 100\nbatch_size = 16\narch = "dcgan:width=8"\ndata = "digits:count=256"\n')
    out = tmp_path / "run"
    result = invoke("run", "--config", str(config_file), "--steps", "2", "--z-dim", "8", "--quiet", "--out", str(out))
    assert result.exit_code == 0, result.output
    written = tomllib.loads((out / "config.toml").read_text())
    assert written["steps"] == 2 and written["batch_size"] == 16


def test_existing_run_is_never_overwritten_by_accident(tmp_path):
    out = tmp_path / "run"
    assert invoke("run", *TINY_FLAGS, "--out", str(out)).exit_code == 0
    before = (out / "checkpoints" / "step-0000004.safetensors").read_bytes()
    result = invoke("run", *TINY_FLAGS, "--out", str(out))
    assert_one_line_error(result, "already holds a run")
    assert (out / "checkpoints" / "step-0000004.safetensors").read_bytes() == before
    assert invoke("run", *TINY_FLAGS, "--out", str(out), "--overwrite").exit_code == 0


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--arch", "dcgna"], ["unknown architecture 'dcgna'", "did you mean 'dcgan'"]),
        (["--loss", "bec"], ["unknown loss 'bec'", "did you mean 'bce'"]),
        (["--data", "digit"], ["unknown data 'digit'", "did you mean 'digits'"]),
        (["--steps", "0"], ["steps must be positive"]),
        (["--batch-size", "-1"], ["batch-size must be positive"]),
        (["--steps", "abc"], ["Invalid value for '--steps'"]),
        (["--arch", "dcgan:depth=3"], ["no option 'depth'", "width (int)"]),
        (["--data", "anime", "--data-root", "/nonexistent/faces"], ["not found", "--data-root"]),
        (["--config", "/nonexistent.toml"], ["config file not found"]),
        (["--device", "cuda:x"], ["device must be"]),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, args, fragments):
    result = invoke("run", "--quiet", "--out", str(tmp_path / "run"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_config_key_is_one_line_error(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text("batchsize = 3\n")
    assert_one_line_error(invoke("run", "--config", str(config_file)), "unknown config key 'batchsize'")


def test_sample_from_missing_or_pickled_checkpoint(tmp_path):
    assert_one_line_error(invoke("sample", str(tmp_path / "nope.safetensors")), "checkpoint not found")
    import torch

    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, pickled)
    assert_one_line_error(invoke("sample", str(pickled)), "pickle", "never unpickles")


def test_real_gankit_run_subprocess(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, "-m", "gankit", "run", *TINY_FLAGS, "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"Run written to {out}" in completed.stdout
    assert (out / "checkpoints" / "step-0000004.safetensors").is_file()
    failed = subprocess.run(
        [sys.executable, "-m", "gankit", "run", "--arch", "nope", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: unknown architecture 'nope'") and "Traceback" not in failed.stderr
