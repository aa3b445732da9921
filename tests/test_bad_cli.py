"""A corpus of bad input to `gankit sample`, `gankit eval` and the config file and flags, and the CLI's handling
of Ctrl-C.

For each bad input: a non-zero exit, one ``Error:`` line that names the problem (never longer than
``MAX_LINE``, whatever the input's size), no traceback, and the files that were there before left exactly as
they were. Adding a case is one line in ``CORPUS``.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gankit.evaluation
from gankit.checkpoint import list_checkpoints, load_checkpoint
from gankit.cli import app

TINY = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
    "--z-dim", "16", "--checkpoint-every", "2", "--sample-every", "2", "--device", "cpu", "--quiet",
]
MAX_LINE = 400  # an error echoes at most about 80 characters of any one value
HUGE = "x" * 10_000_000
LONG = "y" * 10_000
runner = CliRunner()


@dataclass
class BadInput:
    """One bad input: ``prepare(work)`` makes the files it needs and returns the command line, in which
    ``{run}`` is a finished tiny run (shared, read-only) and ``{work}`` the case's own folder."""

    name: str
    prepare: Callable[[Path], list[str]]
    fragments: tuple[str, ...]


def command(*args: str) -> Callable[[Path], list[str]]:
    return lambda work: list(args)


def with_file(name: str, content: bytes | str, *args: str) -> Callable[[Path], list[str]]:
    """A file ``work/name`` (``{file}`` in ``args``), made before the command runs."""

    def prepare(work: Path) -> list[str]:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return [a.replace("{file}", str(path)) for a in args]

    return prepare


def with_fifo(*args: str) -> Callable[[Path], list[str]]:
    def prepare(work: Path) -> list[str]:
        os.mkfifo(work / "fifo.toml")
        return [a.replace("{file}", str(work / "fifo.toml")) for a in args]

    return prepare


def config(text: str) -> Callable[[Path], list[str]]:
    """A config file for a tiny run that would otherwise be fine."""
    return with_file("run.toml", text, "run", *TINY, "--out", "{work}/run", "--config", "{file}")


def run(*args: str) -> Callable[[Path], list[str]]:
    return command("run", *TINY, "--out", "{work}/run", *args)


NESTED = "a = " + "[" * 100_000 + "]" * 100_000 + "\n"

CORPUS = [
    # -- case 4: gankit sample --out ---------------------------------------------------------------
    BadInput("sample onto an existing file", with_file("mine.png", b"my picture", "sample", "{run}", "--out", "{file}"), ("already exists", "--overwrite")),
    BadInput("sample onto an existing .npy", with_file("mine.npy", b"my array", "sample", "{run}", "--out", "{file}"), ("already exists",)),
    BadInput("sample --out a folder", command("sample", "{run}", "--out", "{work}"), ("is a folder",)),
    BadInput("sample --out a folder named .png", with_file("grid.png/keep.txt", "", "sample", "{run}", "--out", "{work}/grid.png"), ("is a folder",)),
    BadInput("sample --out without a suffix", command("sample", "{run}", "--out", "{work}/grid"), ("must end in .png", "'grid'")),
    BadInput("sample --refine not a whole number", command("sample", "{run}", "--refine", "2.5", "--out", "{work}/s.npy"), ("--refine", "integer")),
    BadInput("eval --refine-rate not a number", command("eval", "{run}", "--metric", "modes", "--refine", "2", "--refine-rate", "fast"), ("--refine-rate",)),
    BadInput("sample --out inside a file", with_file("notes.txt", "notes", "sample", "{run}", "--out", "{file}/grid.png"), ("is a file, not a folder",)),
    BadInput("sample --out where the OS refuses", command("sample", "{run}", "--out", "/proc/gankit-test/grid.npy"), ("cannot write --out", "/proc/gankit-test/grid.npy")),
    # -- case 12: counts of 0 or less ----------------------------------------------------------------
    BadInput("eval -n 0", command("eval", "{run}", "--metric", "swd", "-n", "0"), ("-n", "must be positive, got 0")),
    BadInput("eval -n negative", command("eval", "{run}", "--metric", "swd", "-n", "-5"), ("must be positive, got -5",)),
    BadInput("sample -n negative", command("sample", "{run}", "-n", "-1", "--out", "{work}/g.png"), ("must be positive, got -1",)),
    BadInput("run --eval-count 0", run("--eval-every", "1", "--metric", "swd", "--eval-count", "0"), ("eval-count must be positive, got 0",)),
    BadInput("eval_count = 0 in TOML", config("eval_every = 1\nmetric = 'swd'\neval_count = 0\n"), ("eval-count must be positive, got 0",)),
    # -- case 17: seeds, nesting, huge counts ----------------------------------------------------------
    BadInput("run --seed above 2^63", run("--seed", str(2**63 + 1)), ("seed must be between 0 and 4294967295", str(2**63 + 1))),
    BadInput("run --seed negative", run("--seed", "-1"), ("seed must be between 0", "got -1")),
    BadInput("seed above 2^64 in TOML", config(f"seed = {2**64}\n"), ("seed must be between 0", str(2**64))),
    BadInput("negative seed in TOML", config("seed = -7\n"), ("seed must be between 0", "got -7")),
    BadInput("sample --seed above 2^63", command("sample", "{run}", "--seed", str(2**63), "--out", "{work}/g.png"), ("seed must be between 0",)),
    BadInput("sample --seed negative", command("sample", "{run}", "--seed", "-1", "--out", "{work}/g.png"), ("seed must be between 0", "got -1")),
    BadInput("eval --seed above 2^64", command("eval", "{run}", "--metric", "swd", "--seed", str(2**64 + 5)), ("seed must be between 0",)),
    BadInput("eval --seed negative", command("eval", "{run}", "--metric", "swd", "--seed", "-2"), ("seed must be between 0", "got -2")),
    BadInput("TOML nested 100,000 deep", config(NESTED), ("nests arrays or tables too deeply",)),
    BadInput("sample -n 10^9", command("sample", "{run}", "-n", str(10**9), "--out", "{work}/g.png"), ("1,000,000,000 samples need about", "TB of memory", "would fit")),
    BadInput("sample -n 10^9 as .npy", command("sample", "{run}", "-n", str(10**9), "--out", "{work}/g.npy"), ("samples need about", "memory")),
    BadInput("eval -n 10^9", command("eval", "{run}", "--metric", "swd", "-n", str(10**9)), ("samples need about", "memory")),
    # -- case 18: huge values are echoed cut short -----------------------------------------------------
    BadInput("10 MB value in TOML", config(f'steps = "{HUGE}"\n'), ("steps must be int", "10,000,002 characters")),
    BadInput("10 MB unknown key in TOML", config(f"{HUGE} = 1\n"), ("unknown config key", "characters")),
    BadInput("10 kB architecture option", run("--arch", f"dcgan:width={LONG}"), ("option 'width' must be int", "characters")),
    BadInput("10 kB architecture name", run("--arch", LONG), ("unknown architecture", "characters")),
    BadInput("10 kB bad option item", run("--arch", f"dcgan:width=8,{LONG}=1,="), ("bad option", "characters")),
    BadInput("10 kB config file name", command("run", "--config", f"/nonexistent/{LONG}.toml"), ("config file", "File name too long", "characters")),
    BadInput("10 kB device name", command("sample", "{run}", "--device", LONG, "--out", "{work}/g.png"), ("device must be", "characters")),
    BadInput("10 kB metric option", command("eval", "{run}", "--metric", f"swd:{LONG}=1"), ("has no option", "characters")),
    BadInput("10 kB --out name", command("sample", "{run}", "--out", f"{LONG}.png"), ("cannot write --out", "File name too long", "characters")),
    BadInput("10 kB --out suffix", command("sample", "{run}", "--out", f"grid.{LONG}"), ("must end in .png", "characters")),
    # -- attacks beyond the list ---------------------------------------------------------------
    BadInput("sample -n 2^70", command("sample", "{run}", "-n", str(2**70), "--out", "{work}/g.png"), ("samples need about", "memory")),
    BadInput("eval -n 10^400", command("eval", "{run}", "--metric", "swd", "-n", str(10**400)), ("samples need about", "characters")),
    BadInput("sample --device tpu", command("sample", "{run}", "--device", "tpu", "--out", "{work}/g.png"), ("device must be", "'tpu'")),
    BadInput("eval --device tpu", command("eval", "{run}", "--metric", "swd", "--device", "tpu"), ("device must be",)),
    BadInput("lr = nan in TOML", config("lr = nan\n"), ("lr must be a finite number, got nan",)),
    BadInput("lr = inf in TOML", config("lr = inf\n"), ("lr must be a finite number, got inf",)),
    BadInput("lr = 1e400 in TOML", config("lr = 1e400\n"), ("lr must be a finite number",)),
    BadInput("lr as a 400-digit integer in TOML", config(f"lr = {10**400}\n"), ("lr is too large", "characters")),
    BadInput("collapse_d_loss = inf in TOML", config("collapse_d_loss = inf\n"), ("collapse-d-loss must be a finite number",)),
    BadInput("--lr nan", run("--lr", "nan"), ("lr must be a finite number",)),
    BadInput("betas = [nan, 0.9] in TOML", config("betas = [nan, 0.9]\n"), ("betas must be a finite number",)),
    BadInput("betas = [0.5] in TOML", config("betas = [0.5]\n"), ("betas must be two numbers", "[0.5]")),
    BadInput("unknown TOML table", config("[training]\nsteps = 3\n"), ("unknown config key 'training'",)),
    BadInput("TOML key given twice", config("steps = 2\nsteps = 3\n"), ("not valid TOML", "line 2")),
    BadInput("config file is a FIFO", with_fifo("run", *TINY, "--config", "{file}"), ("not a regular file",)),
    BadInput("NUL character in a TOML string", config('out = "runs/a\\u0000b"\n'), ("out must not contain a NUL character",)),
    BadInput("config file is a device", command("run", "--config", "/dev/zero"), ("not a regular file",)),
    BadInput("the same --logger twice", run("--logger", "csv", "--logger", "loggers:csv"), ("logger 'loggers:csv' is given more than once",)),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    result = runner.invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_the_corpus_names_are_unique():
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_input_fails_with_one_short_line_naming_the_problem(case, tmp_path, finished_run, one_thread):
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("{run}", str(finished_run)).replace("{work}", str(work)) for a in case.prepare(work)]
    before, run_before = snapshot(work), snapshot(finished_run)
    result = runner.invoke(app, args)
    assert result.exit_code not in (0, None), result.output[:2000]
    assert isinstance(result.exception, SystemExit), repr(result.exception)[:2000]  # not an escaped exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output[:2000]
    assert len(lines[0]) <= MAX_LINE, lines[0][:2000]
    for fragment in case.fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(work) == before, "files were changed"
    assert snapshot(finished_run) == run_before, "the run was changed"
    assert not (work / "run").exists()


# -- sample output is written atomically ------------------------------------------------------------


def test_sample_overwrite_replaces_the_file_whole_for_png_and_npy(finished_run, tmp_path, one_thread):
    grid, raw = tmp_path / "grid.PNG", tmp_path / "raw.npy"
    grid.write_bytes(b"old picture")
    raw.write_bytes(b"old array")
    for out in (grid, raw):
        result = runner.invoke(app, ["sample", str(finished_run), "-n", "4", "--out", str(out), "--overwrite"])
        assert result.exit_code == 0, result.output
    assert grid.read_bytes().startswith(b"\x89PNG")
    assert np.load(raw).shape == (4, 1, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.PNG", "raw.npy"]  # no temporary file left


def test_an_interrupted_sample_write_leaves_the_old_file_and_no_temporary(finished_run, tmp_path, monkeypatch, one_thread):
    old = tmp_path / "grid.png"
    old.write_bytes(b"the user's picture")

    def interrupted_fsync(descriptor):  # Ctrl-C in the middle of writing the new file
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    result = runner.invoke(app, ["sample", str(finished_run), "-n", "4", "--out", str(old), "--overwrite"])
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines() == [f"Interrupted: Ctrl-C: gankit sample stopped; {old} was left as it was"]
    assert old.read_bytes() == b"the user's picture"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_a_sample_write_removes_what_a_killed_earlier_write_left_and_never_a_live_writers_file(finished_run, tmp_path, one_thread):
    import fcntl
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a PID whose process has ended: its temporary is a SIGKILL's leftover
    out = tmp_path / "grid.png"
    out.write_bytes(b"the user's picture")
    stale = tmp_path / f".grid.png.pid{dead.pid}.0badc0de.tmp"
    stale.write_bytes(b"half a picture")
    live = tmp_path / f".grid.png.pid{os.getpid()}.1234abcd.tmp"  # a writer that is still at work
    live.write_bytes(b"being written")
    other = tmp_path / f".other.png.pid{dead.pid}.0badc0de.tmp"  # another file's: not this command's business
    other.write_bytes(b"x")
    descriptor = os.open(live, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        result = runner.invoke(app, ["sample", str(finished_run), "-n", "4", "--out", str(out), "--overwrite"])
    finally:
        os.close(descriptor)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists() and other.exists()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- Ctrl-C --------------------------------------------------------------------------------------------


def test_ctrl_c_outside_training_prints_one_line_and_exits_130(finished_run, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gankit.evaluation, "evaluate_checkpoint", interrupted)
    result = runner.invoke(app, ["eval", str(finished_run), "--metric", "swd"])
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == ["Interrupted: Ctrl-C: gankit eval stopped"]


def test_a_second_ctrl_c_stops_training_at_once_with_one_line_naming_the_newest_checkpoint(tmp_path, monkeypatch, one_thread):
    import gankit.cli

    out = tmp_path / "run"

    def impatient_user(self, event):
        # Two Ctrl-C in quick succession once a checkpoint is on disk: the second must not wait for the step.
        if event.name == "log" and list_checkpoints(out / "checkpoints"):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(500):  # the handlers run between bytecodes; the second raises out of this loop
                time.sleep(0.01)

    monkeypatch.setattr(gankit.cli.ProgressDisplay, "__call__", impatient_user)
    flags = [*TINY, "--steps", "1000", "--checkpoint-every", "1", "--log-every", "1"]
    result = runner.invoke(app, ["run", *flags, "--out", str(out)])
    assert result.exit_code == 130, result.output
    lines = result.output.strip().splitlines()
    newest = list_checkpoints(out / "checkpoints")[-1]
    assert lines == [
        f"Interrupted: second SIGINT: stopped at once; the newest checkpoint is {newest} "
        f"(resume with: gankit run --resume {out})"
    ]
    load_checkpoint(newest)


def test_a_cuda_device_index_the_machine_lacks_is_refused(monkeypatch):
    from gankit.engine import resolve_device
    from gankit.errors import GankitError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(GankitError, match="there is no CUDA device 99"):
        resolve_device("cuda:99")
