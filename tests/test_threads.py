"""``--threads`` and ``GANKIT_THREADS``: torch's CPU thread count, set before a run builds anything."""
from __future__ import annotations

import json
import tomllib

import pytest
import torch
from typer.testing import CliRunner

import gankit
from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.plugins import load_plugins
from gankit.registry import Registry
from gankit.threads import DEFAULT_THREADS, ENVIRONMENT_VARIABLE

runner = CliRunner()
BENCH = ["bench", "--arch", "dcgan:width=4", "--image-size", "16", "--batch-size", "8", "--steps", "1", "--warmup", "0",
         "--device", "cpu", "--json"]


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Each test starts from 3 threads (none of the counts set below) and neither GANKIT_THREADS nor
    OMP_NUM_THREADS, and leaves torch's count as it found it."""
    previous = torch.get_num_threads()
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(previous)


def bench_threads(*args: str) -> int:
    result = runner.invoke(app, [*BENCH, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["cpu_threads"]


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output


def test_bench_flag_sets_the_thread_count():
    assert bench_threads("--threads", "2") == 2


def test_environment_variable_sets_the_thread_count_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "2")
    assert bench_threads() == 2
    assert bench_threads("--threads", "1") == 1


def test_zero_or_nothing_means_the_default():
    assert bench_threads("--threads", "0") == DEFAULT_THREADS == 1
    torch.set_num_threads(3)
    assert bench_threads() == DEFAULT_THREADS


def test_omp_num_threads_replaces_the_default(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # torch read it at start-up; here the count set by the fixture
    assert bench_threads() == 3


def test_run_flag_is_applied_and_recorded(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "run", "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
        "--z-dim", "16", "--device", "cpu", "--quiet", "--threads", "2", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2
    assert tomllib.loads((out / "config.toml").read_text())["threads"] == 2


@pytest.mark.parametrize("args, environment, fragment", [
    (["--threads", "-1"], None, "threads must be zero (the default) or positive, got -1"),
    ([], "-2", "threads must be zero (the default) or positive, got -2"),
    ([], "two", f"environment variable {ENVIRONMENT_VARIABLE} must be a whole number of threads, got 'two'"),
    ([], "1.5", "got '1.5'"),
])
def test_bad_thread_counts_are_one_line_errors(monkeypatch, args, environment, fragment):
    if environment is not None:
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, environment)
    assert_one_line_error(runner.invoke(app, [*BENCH, *args]), fragment)


def test_negative_threads_in_a_config_file_is_one_line_error(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("threads = -3\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert_one_line_error(result, "threads must be zero (the default) or positive, got -3")


class _RecordThreadsAtBuild:
    """A data source that notes torch's thread count when the engine builds it (the first thing it builds)."""

    seen: list[int] = []

    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        from gankit.bench import synthetic_images

        def build(**options):
            self.seen.append(torch.get_num_threads())
            return synthetic_images(image_size=16, count=16)

        register("threads-probe", build)


def test_threads_are_set_before_anything_is_built():
    probe = _RecordThreadsAtBuild()
    config = RunConfig.from_sources(overrides={"arch": "dcgan:width=4", "data": "threads-probe", "batch_size": 8,
                                               "device": "cpu", "threads": 2})
    Trainer(config, registry=Registry(load_plugins([("probe", probe)])))
    assert probe.seen == [2]
