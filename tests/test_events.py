"""Typed run events: what a real run sends reaches every logger, and every event type is documented."""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import re
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gankit
from gankit import events
from gankit.cli import app
from gankit.components import Logger

ROOT = Path(__file__).resolve().parent.parent
EVENT_TYPES = [
    value for value in vars(events).values()
    if isinstance(value, type) and issubclass(value, events.Event) and value is not events.Event
]

runner = CliRunner()

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)


def float32(value: float) -> float:
    """``value`` as TensorBoard stores a scalar."""
    return struct.unpack("f", struct.pack("f", value))[0]


@pytest.fixture(scope="module")
def ring_run_with_loggers(tmp_path_factory):
    out = tmp_path_factory.mktemp("events") / "ring"
    loggers = ["--logger", "csv"] + (["--logger", "tensorboard"] if importlib.util.find_spec("tensorboard") else [])
    result = runner.invoke(app, [
        "run", "--data", "ring:count=512", "--arch", "mlp:width=16,depth=2", "--batch-size", "32", "--z-dim", "4",
        "--steps", "6", "--eval-every", "2", "--metric", "modes", "--eval-count", "200", "--sample-every", "6",
        "--device", "cpu", "--quiet", *loggers, "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    return out


def evaluations(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def test_eval_csv_holds_every_value_of_every_evaluation(ring_run_with_loggers):
    expected = evaluations(ring_run_with_loggers)
    assert [row["step"] for row in expected] == [2, 4, 6]
    with (ring_run_with_loggers / "eval.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4, 6]
    for row, record in zip(rows, expected):
        values = {key: value for key, value in record.items() if key not in ("step", "metric")}
        assert set(values) == {"modes", "hq", "kl"}
        assert {key: float(row[key]) for key in values} == values


@needs_tensorboard
def test_tensorboard_holds_every_value_of_every_evaluation(ring_run_with_loggers):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(ring_run_with_loggers / "tensorboard"))
    accumulator.Reload()
    expected = evaluations(ring_run_with_loggers)
    for key in ("modes", "hq", "kl"):
        scalars = accumulator.Scalars(f"eval/{key}")
        assert [(s.step, s.value) for s in scalars] == [(r["step"], float32(r[key])) for r in expected]
    logged = [json.loads(line) for line in (ring_run_with_loggers / "metrics.jsonl").read_text().splitlines()]
    assert [(s.step, s.value) for s in accumulator.Scalars("train/d_loss")] == [
        (row["step"], float32(row["d_loss"])) for row in logged
    ]


def test_a_resumed_run_widens_an_eval_csv_that_has_no_value_columns(tmp_path):
    # Before evaluations reached the loggers, eval.csv held a step column alone; resuming such a run must not
    # keep dropping the values because the old header lacks them.
    out = tmp_path / "run"
    flags = ["--data", "ring:count=256", "--arch", "mlp:width=8,depth=1", "--batch-size", "16", "--z-dim", "2",
             "--eval-every", "2", "--metric", "modes", "--eval-count", "100", "--logger", "csv", "--device", "cpu"]
    assert runner.invoke(app, ["run", *flags, "--steps", "4", "--quiet", "--out", str(out)]).exit_code == 0
    (out / "eval.csv").write_text("step\n2\n4\n")
    result = runner.invoke(app, ["run", "--resume", str(out), "--steps", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    with (out / "eval.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    last = evaluations(out)[-1]
    assert [row["step"] for row in rows] == ["2", "4", "6"] and rows[0]["modes"] == ""
    assert {key: float(rows[-1][key]) for key in ("modes", "hq", "kl")} == {k: last[k] for k in ("modes", "hq", "kl")}
    assert not list(out.glob(".eval.csv.*"))  # no temporary left behind


class TypedRecorder(Logger):
    received: list = []

    def __init__(self, *, out):
        pass

    def handle(self, event):
        type(self).received.append(event)


class RecorderPlugin:
    @gankit.hookimpl
    def gankit_register_loggers(self, register):
        register("typed-recorder", TypedRecorder, description="keeps the events it receives")


def test_a_run_sends_typed_events_that_match_its_files(tmp_path):
    from gankit.config import RunConfig
    from gankit.engine import Trainer
    from gankit.plugins import load_plugins
    from gankit.registry import Registry

    registry = Registry(load_plugins([("recorder", RecorderPlugin())], entry_points=False))
    settings = {"data": "ring:count=256", "arch": "mlp:width=8,depth=1", "batch_size": 16, "steps": 4, "z_dim": 2,
                "sample_every": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 2, "metric": "modes",
                "eval_count": 100, "device": "cpu", "logger": ["typed-recorder"]}
    TypedRecorder.received.clear()
    out = Trainer(RunConfig.from_sources(overrides=settings), registry=registry).train(tmp_path / "run")
    received = TypedRecorder.received
    assert all(isinstance(event, events.Event) for event in received)
    start, end = received[0], received[-1]
    assert isinstance(start, events.RunStarted) and isinstance(end, events.RunFinished)
    assert (start.step, start.total_steps, start.out, start.resumed) == (0, 4, out, False)
    assert start.config["metric"] == "metrics:modes" and end.out == out and end.step == 4
    by_type = {kind: [e for e in received if isinstance(e, kind)] for kind in EVENT_TYPES}
    assert [e.path for e in by_type[events.CheckpointWritten]] == sorted((out / "checkpoints").glob("step-*"))
    assert [e.path.name for e in by_type[events.SamplesWritten]] == sorted(p.name for p in (out / "samples").glob("*.png"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [{"step": e.step, **e.values, "img_per_s": e.images_per_second} for e in by_type[events.StepLogged]] == rows
    assert [{"step": e.step, "metric": e.metric, **e.values} for e in by_type[events.EvaluationDone]] == evaluations(out)
    assert all(e.key == "modes" and e.higher_is_better for e in by_type[events.EvaluationDone])


def test_resumed_run_starts_with_the_checkpoint_it_continues_from(tmp_path):
    flags = ["--data", "ring:count=256", "--arch", "mlp:width=8,depth=1", "--batch-size", "16", "--z-dim", "2",
             "--checkpoint-every", "2", "--device", "cpu"]
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", *flags, "--steps", "2", "--quiet", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["run", "--resume", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "resumed from step 2" in " ".join(result.output.split())  # rich wraps lines at the terminal width


def test_an_event_read_as_an_old_data_dict_says_what_to_read_instead():
    event = events.SamplesWritten(3, path=Path("x.png"))
    with pytest.raises(AttributeError, match=r"no 'data' dict.*docs/hooks.md"):
        event.data  # noqa: B018


def test_events_are_frozen():
    event = events.CheckpointWritten(3, path=Path("c.safetensors"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.step = 4


def hooks_sections() -> dict[str, str]:
    found, heading = {}, None
    for line in (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
            found[heading] = ""
        elif line.startswith("## "):
            heading = None
        elif heading is not None:
            found[heading] += line + "\n"
    return found


@pytest.mark.parametrize("kind", EVENT_TYPES, ids=lambda kind: kind.__name__)
def test_every_event_type_and_field_is_documented(kind):
    section = hooks_sections().get(f"{kind.__name__} (`{kind.name}`)")
    assert section is not None, f"docs/hooks.md has no '### {kind.__name__} (`{kind.name}`)' section"
    documented = set(re.findall(r"^- `([a-z_]+)`", section, flags=re.MULTILINE))
    assert documented == {field.name for field in dataclasses.fields(kind)}
