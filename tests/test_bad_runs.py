"""A corpus of bad input about the run folder's life cycle: --out, --overwrite, --resume, the lock.

For each row: a non-zero exit, one ``Error:`` line that names the problem, no traceback, and the files
that were there before (an old run, the data) left exactly as they were. Cases that need two processes,
kills or a simulated disk failure are functions below the table.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

import gankit.loop
from gankit.checkpoint import CheckpointKeeper, list_checkpoints, load_checkpoint
from gankit.cli import app
from gankit.config import RunConfig
from gankit.signals import StopRequest

from image_folders import write_noise

TINY = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
    "--z-dim", "16", "--checkpoint-every", "2", "--sample-every", "2", "--device", "cpu", "--quiet",
]
WORKTREE = Path(__file__).resolve().parents[1]


@dataclass
class BadRun:
    """One bad input: ``prepare(work, finished)`` makes the files it needs (``finished`` is a finished tiny
    run to copy) and returns the command line."""

    name: str
    prepare: Callable[[Path, Path], list[str]]
    fragments: tuple[str, ...]


def _fill(args, work: Path) -> list[str]:
    return [a.replace("{work}", str(work)).replace("{run}", str(work / "run")) for a in args]


def fresh(*args: str, setup: Callable[[Path], None] | None = None) -> Callable[[Path, Path], list[str]]:
    """A new run: ``run`` with the tiny settings and ``args`` (which give --out)."""

    def prepare(work: Path, finished: Path) -> list[str]:
        if setup:
            setup(work)
        return ["run", *TINY, *_fill(args, work)]

    return prepare


def on_run(*args: str, edit: Callable[[Path], None] | None = None) -> Callable[[Path, Path], list[str]]:
    """A copy of the finished run in ``work/run`` (``{run}``), changed by ``edit``, then ``args``."""

    def prepare(work: Path, finished: Path) -> list[str]:
        shutil.copytree(finished, work / "run", symlinks=True)
        if edit:
            edit(work / "run")
        return _fill(args, work)

    return prepare


def set_key(key: str, toml_value: str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        file = run / "config.toml"
        lines = [f"{key} = {toml_value}" if line.startswith(f"{key} = ") else line for line in file.read_text().splitlines()]
        file.write_text("\n".join(lines) + "\n")

    return edit


def make_file(name: str, content: str = "") -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content.replace("{work}", str(work)))

    return setup


def make_link(name: str, target: str) -> Callable[[Path], None]:
    return lambda work: (work / name).symlink_to(target.replace("{work}", str(work)))


def lock_file_as(kind: str) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        (run / ".gankit.lock").unlink(missing_ok=True)
        if kind == "folder":
            (run / ".gankit.lock").mkdir()
        else:
            (run / ".gankit.lock").symlink_to(run / "elsewhere")

    return edit


OLD_RUN_KEPT = "keeps the old run"
CORPUS = [
    # -- --overwrite: checked in full before the old run is touched (issue 12, case 2) ----------------
    BadRun(f"--overwrite with a misspelt architecture {OLD_RUN_KEPT}", on_run("run", *TINY, "--out", "{run}", "--overwrite", "--arch", "dcgna"), ("unknown architecture 'dcgna'",)),
    BadRun(f"--overwrite with a batch larger than the data {OLD_RUN_KEPT}", on_run("run", *TINY, "--out", "{run}", "--overwrite", "--batch-size", "1000"), ("fewer than the batch size",)),
    BadRun(f"--overwrite with an impossible image size {OLD_RUN_KEPT}", on_run("run", *TINY, "--out", "{run}", "--overwrite", "--image-size", "33"), ("33",)),
    BadRun(f"--overwrite with a missing data folder {OLD_RUN_KEPT}", on_run("run", *TINY, "--out", "{run}", "--overwrite", "--data", "folder", "--data-root", "{work}/nope"), ("not found",)),
    # -- strings config.toml cannot hold (case 5) ---------------------------------------------------
    BadRun("NUL in --out from a config file", fresh("--config", "{work}/nul.toml", setup=make_file("nul.toml", 'out = "{work}/a\\u0000b"\n')), ("NUL",)),
    BadRun("--out of bytes that are not UTF-8", fresh("--out", "{work}/caf\udce9"), ("not UTF-8 text",)),
    # -- --resume trains with the checkpoint's config (case 9) --------------------------------------
    BadRun("--resume after lr was edited in config.toml", on_run("run", "--resume", "{run}", "--steps", "4", edit=set_key("lr", "0.1")), ("lr = 0.1", "step-0000002.safetensors", "undo the edit")),
    BadRun("--resume after batch_size was edited in config.toml", on_run("run", "--resume", "{run}", "--steps", "4", edit=set_key("batch_size", "8")), ("batch_size = 8", "undo the edit")),
    BadRun("--resume after arch was edited in config.toml", on_run("run", "--resume", "{run}", "--steps", "4", edit=set_key("arch", '"mlp"')), ("arch = 'mlp'",)),
    BadRun("--resume after config.toml was broken", on_run("run", "--resume", "{run}", "--steps", "4", edit=set_key("lr", "=")), ("not valid TOML",)),
    # -- where --out may be (cases 11 and 17, and hostile inputs found beyond the issue) --------------
    BadRun("--out inside --data-root", fresh("--data-root", "{work}/faces", "--out", "{work}/faces/run", setup=make_file("faces/a.txt")), ("inside --data-root",)),
    BadRun("--out equal to --data-root", fresh("--data-root", "{work}/faces", "--out", "{work}/faces", setup=make_file("faces/a.txt")), ("inside --data-root",)),
    BadRun("--out inside the checkpoints of another run", on_run("run", *TINY, "--out", "{run}/checkpoints/new"), ("inside the run folder",)),
    BadRun("--out with a 300-character name", fresh("--out", "{work}/" + "x" * 300), ("cannot write the run folder", "x" * 300, "File name too long")),
    BadRun("--out is a dangling symlink", fresh("--out", "{work}/link", setup=make_link("link", "{work}/gone")), ("symlink", "does not exist")),
    BadRun("--out through a symlink loop", fresh("--out", "{work}/loop/run", setup=make_link("loop", "{work}/loop")), ("symlink loop",)),
    BadRun("--out is a symlink to a run", on_run("run", *TINY, "--out", "{work}/link", edit=lambda run: (run.parent / "link").symlink_to(run)), ("already holds a run",)),
    BadRun("--resume when the lock file is a folder", on_run("run", "--resume", "{run}", "--steps", "4", edit=lock_file_as("folder")), ("cannot write the run folder", "Is a directory")),
    BadRun("--resume when the lock file is a symlink", on_run("run", "--resume", "{run}", "--steps", "4", edit=lock_file_as("symlink")), ("cannot write the run folder", ".gankit.lock")),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        for path in sorted(folder.rglob("*")) if not path.is_symlink()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished tiny run; each case works on its own copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def one_error_line(result) -> str:
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_the_corpus_covers_the_run_folder():
    assert len(CORPUS) >= 15
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_run_fails_with_one_line_naming_the_problem(case, tmp_path, finished, one_thread):
    work = tmp_path / "work"
    work.mkdir()
    args = case.prepare(work, finished)
    before = snapshot(work)
    line = one_error_line(CliRunner().invoke(app, args))
    for fragment in case.fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert snapshot(work) == before, "files were changed"
    assert not [p for p in tmp_path.rglob("*.replaced-*")], "an old run was left aside"


# -- config.toml holds any string (case 5) ----------------------------------------------------------------

HOSTILE_STRINGS = [
    "new\nline", 'quote " and \\ backslash', "tab\tcr\rform\fbell\x07", "del\x7f", "nul\x00inside", "\x1b[31mred",
    "ünïcödé ✓ 🎲", "'single' \"\"\" triple", "trailing backslash \\", "# not a comment", "key = \"value\"\n[table]",
    "\u2028line separator\u0085", "",
]


@pytest.mark.parametrize("text", HOSTILE_STRINGS, ids=[ascii(t) for t in HOSTILE_STRINGS])
def test_config_toml_round_trips_hostile_strings(text):
    config = RunConfig(arch=text, data_root=text, out=text, metric=text, reg=[text, text + "2"], logger=[text])
    read = tomllib.loads(config.to_toml())
    assert {key: read[key] for key in ("arch", "data_root", "out", "metric", "reg", "logger")} == {
        "arch": text, "data_root": text, "out": text, "metric": text, "reg": [text, text + "2"], "logger": [text],
    }


def test_a_run_whose_out_holds_control_characters_can_be_resumed(tmp_path, one_thread):
    out = tmp_path / 'we"ird \\ na\nme\x7f\tü'
    assert CliRunner().invoke(app, ["run", *TINY, "--out", str(out)]).exit_code == 0
    assert tomllib.loads((out / "config.toml").read_text())["out"] == str(out)
    resumed = CliRunner().invoke(app, ["run", "--resume", str(out), "--steps", "4", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-0000004.safetensors"


# -- --overwrite (case 2, and Ctrl-C or a kill during the replacement) -------------------------------------


def copy_run(finished: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished, run, symlinks=True)
    return run


def test_overwrite_replaces_the_old_run_and_leaves_nothing_aside(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    (run / "notes.txt").write_text("mine")  # not a run file: --overwrite never moves it
    result = CliRunner().invoke(app, ["run", *TINY, "--steps", "4", "--out", str(run), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-0000002.safetensors", "step-0000004.safetensors"]
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, finished, monkeypatch, one_thread):
    run = copy_run(finished, tmp_path)
    before = snapshot(run)

    def disk_full(self, step, tensors, metadata):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder / "step.tmp"))

    monkeypatch.setattr(CheckpointKeeper, "write", disk_full)
    line = one_error_line(CliRunner().invoke(app, ["run", *TINY, "--out", str(run), "--overwrite", "--lr", "0.001"]))
    assert "No space left on device" in line and str(run) in line
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_ctrl_c_while_the_old_run_is_moved_aside_puts_it_back(tmp_path, finished, monkeypatch, one_thread):
    run = copy_run(finished, tmp_path)
    before = snapshot(run)
    real_replace, calls = os.replace, []

    def interrupted_replace(source, target):
        calls.append(source)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(source, target)

    import gankit.runfolder

    monkeypatch.setattr(gankit.runfolder.os, "replace", interrupted_replace)
    result = CliRunner().invoke(app, ["run", *TINY, "--out", str(run), "--overwrite"])
    assert result.exit_code == 130, result.output
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_at_the_next_start(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    before = snapshot(run)
    # What kill -9 leaves: the old run's entries in the hidden sibling, the new run's first files in the folder.
    aside = tmp_path / ".run.replaced-999999"
    aside.mkdir()
    for name in ("config.toml", "metrics.jsonl", "checkpoints", "samples"):
        os.replace(run / name, aside / name)
    (run / "config.toml").write_text("steps = 99\n")
    (run / "samples").mkdir()
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "put back the old run" in result.output
    assert not aside.exists()
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-0000002.safetensors", "step-0000004.safetensors"]
    assert snapshot(run)["checkpoints/step-0000002.safetensors"] == before["checkpoints/step-0000002.safetensors"]


# -- the lock (case 3): a real second process, and kill -9 of the holder ------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from gankit.runfolder import RunFolderLock
    RunFolderLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def hold_lock(folder: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKTREE), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_locked_run_folder_refuses_a_second_run_and_a_resume_until_the_holder_dies(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    holder = hold_lock(run)
    try:
        before = snapshot(run)
        for args in (["run", "--resume", str(run), "--steps", "4"], ["run", *TINY, "--out", str(run), "--overwrite"]):
            line = one_error_line(CliRunner().invoke(app, args))
            assert f"in use by another gankit process (PID {holder.pid})" in line
            assert snapshot(run) == before
        holder.send_signal(signal.SIGKILL)  # the kernel releases the lock: never a stale lock
        holder.wait(timeout=60)
    finally:
        holder.kill()
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (run / ".gankit.lock").read_text() == f"{os.getpid()}\n"


def test_a_new_run_refuses_a_folder_locked_by_another_process(tmp_path, one_thread):
    out = tmp_path / "run"
    holder = hold_lock(out)  # e.g. a run that is still building its first checkpoint
    try:
        line = one_error_line(CliRunner().invoke(app, ["run", *TINY, "--out", str(out)]))
        assert f"PID {holder.pid}" in line
        assert sorted(p.name for p in out.iterdir()) == [".gankit.lock"]
    finally:
        holder.kill()
        holder.wait(timeout=60)


# -- resume from the checkpoint's own config (cases 9 and 19), the data fingerprint (case 10) ---------------


def test_resume_takes_an_edited_steps_from_config_toml_and_says_so(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    set_key("steps", "4")(run)
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "steps (2 -> 4)" in result.stderr
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-0000004.safetensors"


def test_resume_with_steps_edited_and_given_as_a_flag_follows_the_flag_silently(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    set_key("steps", "6")(run)
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr, result.stderr
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-0000004.safetensors"


def test_resume_without_config_toml_uses_the_checkpoint_config_and_writes_it_again(tmp_path, finished, one_thread):
    run = copy_run(finished, tmp_path)
    saved = tomllib.loads((run / "config.toml").read_text())
    (run / "config.toml").unlink()
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--steps", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "no config.toml" in warnings[0] and "step-0000002.safetensors" in warnings[0]
    rewritten = tomllib.loads((run / "config.toml").read_text())
    assert {**rewritten, "steps": 2, "out": None} == {**saved, "steps": 2, "out": None}


def image_run(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "run", "--arch", "dcgan:width=8", "--data", "folder", "--image-size", "32", "--batch-size", "4",
        "--steps", "2", "--z-dim", "16", "--checkpoint-every", "2", "--sample-every", "2", "--device", "cpu",
        "--quiet", *extra,
    ]


def test_resume_warns_in_one_line_when_the_data_folder_changed(tmp_path, one_thread):
    faces = tmp_path / "faces"
    for index in range(8):
        write_noise(faces / f"{index}.png", seed=index)
    out = tmp_path / "run"
    assert CliRunner().invoke(app, image_run(tmp_path, "--data-root", str(faces), "--out", str(out))).exit_code == 0
    assert load_checkpoint(list_checkpoints(out / "checkpoints")[-1])[1]["data_fingerprint"]
    same = CliRunner().invoke(app, ["run", "--resume", str(out), "--steps", "4", "--quiet"])
    assert same.exit_code == 0 and "Warning" not in same.stderr, same.stderr
    write_noise(faces / "8.png", seed=8)
    changed = CliRunner().invoke(app, ["run", "--resume", str(out), "--steps", "6", "--quiet"])
    assert changed.exit_code == 0, changed.output
    warnings = [line for line in changed.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "the data changed since step-0000004.safetensors" in warnings[0]


def test_a_relative_data_root_is_stored_absolute_and_said(tmp_path, monkeypatch, one_thread):
    for index in range(8):
        write_noise(tmp_path / "faces" / f"{index}.png", seed=index)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, image_run(tmp_path, "--data-root", "faces", "--out", "run"))
    assert result.exit_code == 0, result.output
    assert f"data root faces stored as {tmp_path / 'faces'}" in result.stderr
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["data_root"] == str(tmp_path / "faces")
    monkeypatch.chdir(tmp_path / "faces")  # elsewhere: the run still finds its data
    resumed = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "run"), "--steps", "4", "--quiet"])
    assert resumed.exit_code == 0, resumed.output


# -- the resume hint (case 25), disk errors (case 17) ------------------------------------------------------


@pytest.mark.parametrize("steps, hint", [(1, False), (2, True)])
def test_the_resume_hint_is_printed_only_when_steps_are_left(steps, hint, tmp_path, monkeypatch, one_thread):
    real_enter = StopRequest.__enter__

    def signal_at_once(self):
        real_enter(self)
        self.requested = "SIGINT"
        return self

    monkeypatch.setattr(StopRequest, "__enter__", signal_at_once)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", *TINY, "--steps", str(steps), "--out", str(out)])
    assert result.exit_code == 130, result.output
    assert "stopped after step 1" in result.stderr
    assert ("Resume with:" in result.stderr) is hint


def test_a_read_only_disk_for_out_is_one_line_and_creates_nothing(tmp_path, monkeypatch, one_thread):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "out")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    line = one_error_line(CliRunner().invoke(app, ["run", *TINY, "--out", str(tmp_path / "out" / "run")]))
    assert "cannot write the run folder" in line and "Read-only file system" in line and str(tmp_path / "out") in line
    assert not (tmp_path / "out").exists()


def test_a_full_disk_when_the_run_starts_is_one_line_and_leaves_no_files(tmp_path, monkeypatch, one_thread):
    def disk_full(path, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(gankit.loop, "write_atomic", disk_full)
    out = tmp_path / "new" / "run"
    line = one_error_line(CliRunner().invoke(app, ["run", *TINY, "--out", str(out)]))
    assert "No space left on device" in line and str(out / "config.toml") in line
    assert not (tmp_path / "new").exists()
