"""`gankit eval`, evaluation during training with the best checkpoint, `gankit sample` outputs, and loggers."""
from __future__ import annotations

import csv
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import gankit
from gankit.checkpoint import load_checkpoint
from gankit.cli import app
from gankit.components import Logger
from gankit.events import DivergenceDetected, EvaluationDone, RunStarted, StepLogged

runner = CliRunner()

RING_FLAGS = [
    "--data", "ring:count=512", "--arch", "mlp:width=16,depth=2", "--batch-size", "32", "--steps", "6",
    "--z-dim", "4", "--sample-every", "3", "--checkpoint-every", "6", "--device", "cpu", "--quiet",
]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result) -> str:
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ring"
    result = invoke("run", *RING_FLAGS, "--eval-every", "2", "--eval-count", "200", "--logger", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_eval_during_training_logs_the_metric_and_keeps_the_best_checkpoint(ring_run):
    records = [json.loads(line) for line in (ring_run / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(r["metric"] == "metrics:modes" and {"modes", "hq", "kl"} <= set(r) for r in records)
    best = max(records, key=lambda r: (r["modes"], -r["step"]))  # the first of the highest
    _, metadata = load_checkpoint(ring_run / "checkpoints" / "best.safetensors")
    assert metadata["step"] == best["step"]
    assert metadata["best"] == {"metric": "modes", "value": best["modes"], "step": best["step"]}


def test_eval_prints_json_for_a_run_folder(ring_run):
    result = invoke("eval", str(ring_run), "--metric", "modes", "-n", "300", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["metric"] == "metrics:modes" and report["samples"] == 300 and report["step"] == 6
    assert report["ema"] is True  # the ring recipe trains with an EMA generator
    assert set(report["values"]) == {"modes", "hq", "kl"}
    assert 0 <= report["values"]["modes"] <= 8


def test_eval_prints_a_table(ring_run):
    result = invoke("eval", str(ring_run / "checkpoints" / "best.safetensors"), "--metric", "modes", "-n", "100")
    assert result.exit_code == 0, result.output
    assert "modes" in result.output and "higher is better" in result.output


def test_eval_with_a_metric_that_does_not_fit_the_data_is_one_line(ring_run):
    assert "scores images" in one_line_error(invoke("eval", str(ring_run), "--metric", "swd"))
    assert "unknown metric" in one_line_error(invoke("eval", str(ring_run), "--metric", "nope"))


def test_fid_without_weights_is_one_line_that_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    out = tmp_path / "digits"
    flags = ["--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
             "--z-dim", "16", "--device", "cpu", "--quiet", "--out", str(out)]
    assert invoke("run", *flags).exit_code == 0
    line = one_line_error(invoke("eval", str(out), "--metric", "fid"))
    assert "--weights PATH" in line and "never downloads" in line
    assert "not found" in one_line_error(invoke("eval", str(out), "--metric", "fid", "--weights", str(tmp_path / "no")))


def test_eval_every_without_a_metric_is_refused_before_training(tmp_path):
    flags = ["--arch", "dcgan:width=8", "--data", "digits:count=256", "--steps", "2", "--device", "cpu", "--quiet"]
    line = one_line_error(invoke("run", *flags, "--eval-every", "1", "--out", str(tmp_path / "r")))
    assert "--metric" in line
    assert not (tmp_path / "r").exists()


def test_sample_writes_npy_for_any_data_and_a_scatter_png_in_2d(ring_run, tmp_path):
    result = invoke("sample", str(ring_run), "-n", "50", "--out", str(tmp_path / "points.npy"))
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "points.npy").shape == (50, 2)
    assert invoke("sample", str(ring_run), "-n", "50", "--out", str(tmp_path / "points.png")).exit_code == 0
    assert Image.open(tmp_path / "points.png").size == (400, 400)
    assert "must end in .png" in one_line_error(invoke("sample", str(ring_run), "--out", str(tmp_path / "x.txt")))


def test_sample_writes_a_png_grid_and_raw_images(tmp_path):
    out = tmp_path / "digits"
    flags = ["--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
             "--z-dim", "16", "--device", "cpu", "--quiet", "--out", str(out)]
    assert invoke("run", *flags).exit_code == 0
    assert invoke("sample", str(out), "-n", "4", "--out", str(tmp_path / "grid.png")).exit_code == 0
    assert Image.open(tmp_path / "grid.png").mode == "RGB"
    assert invoke("sample", str(out), "-n", "4", "--out", str(tmp_path / "raw.npy")).exit_code == 0
    raw = np.load(tmp_path / "raw.npy")
    assert raw.shape == (4, 1, 32, 32) and raw.min() >= -1 and raw.max() <= 1


def test_csv_logger_writes_the_logged_losses_and_the_evaluations(ring_run):
    with (ring_run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {"step", "d_loss", "g_loss"} <= set(rows[0])
    jsonl = [json.loads(line) for line in (ring_run / "metrics.jsonl").read_text().splitlines()]
    assert [int(r["step"]) for r in rows] == [r["step"] for r in jsonl if "event" not in r]
    with (ring_run / "eval.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [2, 4, 6]


def test_tensorboard_logger_without_the_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what a machine without tensorboard sees
    line = one_line_error(invoke("run", *RING_FLAGS, "--logger", "tensorboard", "--out", str(tmp_path / "r")))
    assert "pip install tensorboard" in line
    assert not (tmp_path / "r" / "checkpoints").exists()  # refused before any training


def test_an_unknown_logger_is_refused_before_the_run_folder_is_made(tmp_path):
    # Logger specs are checked when the run is built; they used to be checked when training started, which
    # left an empty run folder behind.
    line = one_line_error(invoke("run", *RING_FLAGS, "--logger", "nosuch", "--out", str(tmp_path / "r")))
    assert "unknown logger 'nosuch'" in line
    assert not (tmp_path / "r").exists()


def resumed_after_a_lost_checkpoint(out, logger: str):
    """Six steps logged every step with checkpoints at 3 and 6; the one at 6 is lost (as if killed while writing
    it), so ``--resume`` continues from step 3 and logs steps 4-6 a second time."""
    flags = [*RING_FLAGS, "--checkpoint-every", "3", "--log-every", "1", "--logger", logger, "--out", str(out)]
    assert invoke("run", *flags).exit_code == 0
    first = losses_logged(out)
    (out / "checkpoints" / "step-0000006.safetensors").unlink()
    result = invoke("run", "--resume", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert losses_logged(out) == first  # the resumed steps are bit-for-bit the first ones
    return first


def losses_logged(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key != "img_per_s"} for row in rows]


def started(out) -> RunStarted:
    return RunStarted(0, total_steps=4, out=out, device="cpu", config={})


def logged(step: int, **values: float) -> StepLogged:
    return StepLogged(step, values=values, images_per_second=5.0, interval_steps=1)


def rolled_back(step: int, *, to_step: int) -> DivergenceDetected:
    return DivergenceDetected(
        step, kind="nonfinite", detail="d_loss is nan", action="rollback", rollbacks=1, to_step=to_step, lr_factor=0.5
    )


def test_csv_logger_holds_each_step_once_after_a_resume(tmp_path):
    out = tmp_path / "r"
    jsonl = resumed_after_a_lost_checkpoint(out, "csv")
    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["d_loss"]) for r in rows] == [r["d_loss"] for r in jsonl]


def test_csv_logger_drops_the_rows_after_a_rollback_and_keeps_its_columns(tmp_path):
    from gankit.builtins.loggers import CSVLogger

    logger = CSVLogger(out=tmp_path)
    logger.handle(started(tmp_path))
    for step in (1, 2, 3, 4):
        logger.handle(logged(step, d_loss=step / 10, g_loss=step))
    logger.handle(EvaluationDone(4, metric="modes", values={"modes": 8}, key="modes", higher_is_better=True))
    logger.handle(rolled_back(4, to_step=2))
    for step in (3, 4):  # after the rollback the values come in another key order
        logger.handle(logged(step, g_loss=-step, d_loss=step))
    logger.close()
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["step", "d_loss", "g_loss", "img_per_s"], ["1", "0.1", "1", "5.0"], ["2", "0.2", "2", "5.0"],
        ["3", "3", "-3", "5.0"], ["4", "4", "-4", "5.0"],
    ]
    assert (tmp_path / "eval.csv").read_text().splitlines() == ["step,modes", "4,8"]  # evaluations stay


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_logger_writes_scalars_and_hides_the_steps_a_resume_logs_again(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "r"
    jsonl = resumed_after_a_lost_checkpoint(out, "tensorboard")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the first run's and the resumed
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/d_loss")
    assert [s.step for s in scalars] == [1, 2, 3, 4, 5, 6]
    assert [s.value for s in scalars] == pytest.approx([r["d_loss"] for r in jsonl], rel=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_logger_hides_the_steps_after_a_rollback(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gankit.builtins.loggers import TensorBoardLogger

    logger = TensorBoardLogger(out=tmp_path)
    logger.handle(started(tmp_path))
    for step in (1, 2, 3, 4):
        logger.handle(logged(step, d_loss=float(step)))
    logger.handle(rolled_back(4, to_step=2))
    for step in (3, 4):
        logger.handle(logged(step, d_loss=-float(step)))
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(s.step, s.value) for s in events.Scalars("train/d_loss")] == [(1, 1.0), (2, 2.0), (3, -3.0), (4, -4.0)]


class RecordingPlugin:
    class Recorder(Logger):
        events: list = []

        def __init__(self, *, out, tag: str = "x"):
            self.tag = tag
            self.closed = False

        def handle(self, event):
            type(self).events.append((self.tag, event.name, event.step))

        def close(self):
            type(self).events.append((self.tag, "closed", None))

    @gankit.hookimpl
    def gankit_register_loggers(self, register):
        register("recorder", self.Recorder, description="records events")


def test_a_plugin_logger_receives_every_event_and_is_closed(tmp_path):
    from gankit.config import RunConfig
    from gankit.engine import Trainer
    from gankit.plugins import load_plugins
    from gankit.registry import Registry

    registry = Registry(load_plugins([("recording", RecordingPlugin())], entry_points=False))
    settings = {"data": "ring:count=256", "arch": "mlp:width=8,depth=1", "batch_size": 16, "steps": 2,
                "sample_every": 2, "log_every": 1, "device": "cpu", "z_dim": 2, "logger": ["recorder:tag=t"]}
    Trainer(RunConfig.from_sources(overrides=settings), registry=registry).train(tmp_path / "run")
    names = [name for tag, name, _ in RecordingPlugin.Recorder.events if tag == "t"]
    assert names[0] == "start" and names[-2:] == ["end", "closed"]
    assert names.count("log") == 2 and "sample" in names and "checkpoint" in names
