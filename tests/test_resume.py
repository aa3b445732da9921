"""Resuming a run: bit-for-bit equal to the uninterrupted run, after Ctrl-C, SIGTERM or kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib

import pytest
import torch
from typer.testing import CliRunner

from gankit.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, unprefixed
from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.resume import read_run_config, resume_trainer
from gankit.signals import TrainingInterrupted

# 8 batches per epoch, so 12 steps cross an epoch boundary; a log interval (4) straddles checkpoint 6.
RESUME_RUN = {
    "arch": "dcgan:width=8", "data": "digits:count=256", "batch_size": 32, "steps": 12, "z_dim": 16,
    "device": "cpu", "checkpoint_every": 6, "log_every": 4, "sample_every": 6,
}
RESUME_FLAGS = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "32", "--z-dim", "16",
    "--device", "cpu", "--checkpoint-every", "6", "--log-every", "4", "--sample-every", "6", "--quiet",
]


# torch on one thread (tests/conftest.py): same arithmetic in every run compared, no fight over cores.
pytestmark = pytest.mark.usefixtures("one_thread")


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def train(out, **changes) -> Trainer:
    trainer = Trainer(RunConfig.from_sources(overrides={**RESUME_RUN, **changes}))
    trainer.train(out)
    return trainer


def logged_losses(run_dir) -> list[dict]:
    """The metrics log without its timing column (img/s is wall-clock, not a result)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows]


def final_networks(run_dir) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])
    return {k: v for k, v in tensors.items() if k.startswith(("generator.", "discriminator."))}


def assert_same_tensors(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    different = [name for name in left if not torch.equal(left[name], right[name])]
    assert not different, f"tensors differ: {different[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must equal."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference") / "run"
    train(out)
    torch.set_num_threads(previous)
    return out


def test_run_interrupted_mid_interval_by_sigint_resumes_bit_for_bit(reference, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(RunConfig.from_sources(overrides=RESUME_RUN))
    real_step = trainer.train_step

    def step_with_ctrl_c(step):
        if step == 6:  # during the 7th step: mid-way through the log interval 5-8, after checkpoint 6
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(step)

    trainer.train_step = step_with_ctrl_c
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.train(out)
    assert stopped.value.step == 7 and stopped.value.signal_name == "SIGINT"
    assert stopped.value.checkpoint == out / "checkpoints" / "step-0000007.safetensors"
    assert "gankit run --resume" in stopped.value.resume_command()
    # The handlers are put back once training stops.
    assert signal.getsignal(signal.SIGINT) is handler_before

    resumed = resume_trainer(out)
    assert resumed.step == 7
    resumed.train(out)
    assert_same_tensors(final_networks(out), final_networks(reference))
    assert logged_losses(out) == logged_losses(reference)


def test_resume_loads_weights_and_never_initialises_them_again(reference, tmp_path):
    checkpoint = reference / "checkpoints" / "step-0000006.safetensors"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_bytes((reference / "config.toml").read_bytes())
    (run / "checkpoints" / checkpoint.name).write_bytes(checkpoint.read_bytes())
    tensors, metadata = load_checkpoint(checkpoint)
    trainer = resume_trainer(run)
    assert trainer.step == 6
    assert_same_tensors(unprefixed("generator", tensors), trainer.generator.state_dict())
    assert_same_tensors(unprefixed("discriminator", tensors), trainer.discriminator.state_dict())
    assert trainer.batches.state_dict() == metadata["batches"]
    state = trainer.optimizer_g.state_dict()["state"]
    assert torch.equal(state[0]["exp_avg"], tensors["optimizer_g.state.0.exp_avg"])


def test_resume_skips_a_damaged_newest_checkpoint_with_a_warning(reference, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_bytes((reference / "config.toml").read_bytes())
    for name in ("step-0000006.safetensors", "step-0000012.safetensors"):
        (run / "checkpoints" / name).write_bytes((reference / "checkpoints" / name).read_bytes())
    (run / "metrics.jsonl").write_bytes((reference / "metrics.jsonl").read_bytes() + b'{"step": 13, "d_lo')
    (run / "eval.jsonl").write_text('{"step": 6, "score": 1.0}\n{"step": 12, "score": 0.5}\n')
    newest = run / "checkpoints" / "step-0000012.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a copy cut short
    warnings = []
    trainer = resume_trainer(run, warn=warnings.append)
    assert trainer.step == 6 and trainer.resumed_from.name == "step-0000006.safetensors"
    assert len(warnings) == 1 and "step-0000012.safetensors" in warnings[0] and "truncated" in warnings[0]
    # Rows after step 6 (and a line cut short by a kill) are dropped: the resumed run logs them again.
    assert [row["step"] for row in logged_losses(run)] == [4, 6]
    assert (run / "eval.jsonl").read_text() == '{"step": 6, "score": 1.0}\n'


def test_resume_keeps_the_saved_config_against_recommendations(reference, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    text = (reference / "config.toml").read_text().replace("d_steps = 1\n", "d_steps = 2\n")
    (run / "config.toml").write_text(text)
    name = "step-0000006.safetensors"
    # A run trained with d_steps = 2: resume trains with the config saved in its checkpoint.
    tensors, metadata = load_checkpoint(reference / "checkpoints" / name)
    metadata["config"]["d_steps"] = 2
    save_checkpoint(run / "checkpoints" / name, tensors, metadata)
    config = read_run_config(run)
    assert config.user_set == set(RunConfig.keys())
    # bce recommends d_steps = 1; the run's own value wins.
    assert resume_trainer(run).config.d_steps == 2


def test_cli_resume_extends_a_finished_run_and_refuses_without_more_steps(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", *RESUME_FLAGS, "--steps", "6", "--out", str(out)]).exit_code == 0
    again = runner.invoke(app, ["run", "--resume", str(out), "--quiet"])
    assert again.exit_code != 0 and "already finished at step 6" in again.output and "--steps" in again.output
    extended = runner.invoke(app, ["run", "--resume", str(out), "--steps", "8", "--quiet"])
    assert extended.exit_code == 0, extended.output
    assert [checkpoint.name for checkpoint in list_checkpoints(out / "checkpoints")][-1] == "step-0000008.safetensors"
    assert tomllib.loads((out / "config.toml").read_text())["steps"] == 8
    assert [row["step"] for row in logged_losses(out)] == [4, 6, 8]


def test_cli_resume_refuses_flags_that_would_change_the_run(reference):
    result = CliRunner().invoke(app, ["run", "--resume", str(reference), "--lr", "0.1", "--steps", "20"])
    assert result.exit_code != 0
    assert "--lr cannot be changed" in result.output


def test_sigterm_finishes_the_step_checkpoints_and_exits_130(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gankit", "run", *RESUME_FLAGS, "--steps", "100000", "--checkpoint-every", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 240
        while not list_checkpoints(out / "checkpoints") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list_checkpoints(out / "checkpoints"), "no checkpoint appeared"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"Resume with: gankit run --resume {out}" in stderr
    stopped_at = int(stderr.split("stopped after step ")[1].split(",")[0])
    tensors, metadata = load_checkpoint(out / "checkpoints" / f"step-{stopped_at:07d}.safetensors")
    assert metadata["step"] == stopped_at


def test_kill_9_at_a_random_moment_then_resume_equals_the_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "gankit", "run", *RESUME_FLAGS, "--steps", "12", "--checkpoint-every", "3",
               "--out", str(out)]
    # checkpoint-every 3 changes when intervals are flushed, so the reference is trained with it too.
    expected = tmp_path / "expected"
    train(expected, checkpoint_every=3)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env())
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "checkpoints" / "step-0000006.safetensors").exists():
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    killed_at = max((int(p.name[5:12]) for p in list_checkpoints(out / "checkpoints")), default=0)
    if process.returncode != 0 and killed_at < 12:  # else the run outran the kill: nothing left to resume
        resume_trainer(out).train(out)
    assert_same_tensors(final_networks(out), final_networks(expected))
    assert logged_losses(out) == logged_losses(expected)


def test_resume_of_a_folder_without_a_run_is_one_line_error(tmp_path):
    with pytest.raises(GankitError, match="not a run directory"):
        resume_trainer(tmp_path)
