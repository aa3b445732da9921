"""``gankit sweep``: a grid of settings over seeds, expanded into ordinary run folders under one sweep folder
and trained as child processes (``python -m gankit run``), N at a time; running it again finishes what is left.

The sweep folder holds ``sweep.json`` (the grid, the seeds and the flags every run shares: what makes it this
sweep), ``status.json`` (how each run's last attempt ended, with a failed run's one-line error) and ``logs/``
(each child's output). Each run is a normal run folder, ``<sweep>/<key=value,...>/seed-<N>``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gankit.config import SETTINGS_BY_NAME, RunConfig, check_seed, read_toml, settings
from gankit.errors import GankitError, quoted, shortened
from gankit.flags import run_flags

MANIFEST = "sweep.json"
STATUS = "status.json"
LOGS = "logs"
# Base flags that change how fast a run trains, not what it is: a sweep run again with other ones is the same sweep.
NOT_IDENTITY = ("threads",)
# Settings the sweep itself decides for each run.
SWEEP_DECIDES = {"out": "each run's folder is named by the sweep under --out", "seed": "give --seeds N (and --seed FIRST)"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
NAME_LIMIT = 120
# What a child prints when another process holds its run folder's lock (gankit/runfolder.py): then it waits.
_IN_USE = "is in use by another gankit process"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid: its folder (relative to the sweep folder), the grid's values as given, its seed,
    and every setting the child is given (the sweep's flags, the grid's values, the seed and the folder)."""

    name: str
    settings: dict[str, str]
    seed: int
    values: dict[str, Any]


# -- the grid ---------------------------------------------------------------------------------------------


def parse_grid(texts: Sequence[str]) -> dict[str, list[str]]:
    """``--set KEY=V1,V2`` flags as {key: [values]}. Values are split on ``;`` when the text holds one, so that
    component options can keep their commas (``arch=mlp:width=16,depth=1;mlp:width=32,depth=1``); a key given
    twice adds values."""
    grid: dict[str, list[str]] = {}
    for text in texts:
        raw_key, sep, listed = text.partition("=")
        key = raw_key.strip().replace("-", "_")
        if not sep or not key:
            raise GankitError(f"--set {quoted(text)}: expected KEY=VALUE,VALUE... (e.g. --set loss=bce,hinge)")
        if key not in SETTINGS_BY_NAME:
            raise GankitError(f"--set {quoted(text)}: {quoted(raw_key.strip())} is not a setting of gankit run{_close(key)}")
        if key in SWEEP_DECIDES:
            raise GankitError(f"--set {quoted(text)}: {SWEEP_DECIDES[key]}")
        separator = ";" if ";" in listed else ","
        values = [value.strip() for value in listed.split(separator) if value.strip()]
        if not values:
            raise GankitError(f"--set {quoted(text)}: no values after {key.replace('_', '-')}=")
        known = grid.setdefault(key, [])
        for value in values:
            if value in known:
                raise GankitError(f"--set {quoted(text)}: {key.replace('_', '-')}={quoted(value)} is given twice")
            known.append(value)
    return grid


def _close(key: str) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(SETTINGS_BY_NAME), n=1)
    return f"; did you mean {match[0].replace('_', '-')!r}?" if match else " (see gankit run --help)"


def typed_value(key: str, text: str) -> Any:
    """A ``--set`` value as the setting's type; lists split on ``+`` (``reg=clip+gp``) and ``none`` is empty."""
    field = next(f for f in settings() if f.name == key)
    base = field.type.replace("| None", "").strip()
    label = f"--set {key.replace('_', '-')}={shortened(text)}"
    if base == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise GankitError(f"{label}: {key.replace('_', '-')} is on or off (true/false)")
    if base == "list[str]":
        return [] if text == "none" else [part.strip() for part in text.split("+") if part.strip()]
    config = RunConfig()
    config.update({key: text}, source=label)
    return getattr(config, key)


def run_name(point: Mapping[str, str], seed: int) -> str:
    """``loss=bce,reg=r1/seed-0``: readable, one folder per setting; characters a folder name should not hold
    become ``_`` and a very long name ends in a hash of the whole."""
    setting = ",".join(f"{key}={value}" for key, value in point.items()) or "base"
    safe = re.sub(r"[^\w.=:+,@-]", "_", setting)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if len(safe) > NAME_LIMIT:
        safe = safe[:NAME_LIMIT - 13] + "-" + hashlib.sha1(setting.encode("utf-8", "replace")).hexdigest()[:12]
    return f"{safe}/seed-{seed}"


def plan_runs(folder: Path, grid: Mapping[str, list[str]], base: Mapping[str, Any], seeds: Sequence[int]) -> list[PlannedRun]:
    """Every (setting, seed) of the grid, settings first in the order given; each value checked once."""
    both = sorted(set(grid) & {key for key, value in base.items() if value is not None})
    if both:
        flag = both[0].replace("_", "-")
        raise GankitError(f"--{flag} and --set {flag}=... are both given; give {flag} once")
    typed = {key: {text: typed_value(key, text) for text in texts} for key, texts in grid.items()}
    points: list[dict[str, str]] = [{}]
    for key, texts in grid.items():
        points = [{**point, key: text} for point in points for text in texts]
    runs, names = [], {}
    for point in points:
        for seed in seeds:
            name = run_name(point, seed)
            if name in names:
                raise GankitError(f"--set values {quoted(names[name])} and {quoted(point)} give the same run folder {name}")
            names[name] = point
            values = {**base, **{key: typed[key][text] for key, text in point.items()}, "seed": seed,
                      "out": str(folder / name)}
            runs.append(PlannedRun(name, dict(point), seed, {k: v for k, v in values.items() if v is not None}))
    return runs


def check_runs(runs: Sequence[PlannedRun]) -> None:
    """Refuse, before anything runs, a value no run could start with: a bad type or range, an unknown
    component or component option. What only training finds out (a shape an architecture cannot serve...)
    fails that run alone."""
    from gankit.registry import default_registry

    registry = default_registry()
    checked: set[tuple[str, str]] = set()
    for run in runs:
        config = RunConfig.from_sources(None, {key: value for key, value in run.values.items() if value != []})
        for key, shown in SETTINGS_BY_NAME.items():
            specs = getattr(config, key)
            if shown.kind is None or not specs:
                continue
            for spec in specs if isinstance(specs, list) else [specs]:
                if (shown.kind, spec) not in checked:
                    checked.add((shown.kind, spec))
                    registry.resolve(shown.kind, spec)


# -- a run's command line ---------------------------------------------------------------------------------


def run_arguments(values: Mapping[str, Any]) -> list[str]:
    """The ``gankit run`` flags that give a run these settings."""
    flags = {flag.name: flag for flag in run_flags()}
    fields = {field.name: field for field in settings()}
    arguments: list[str] = []
    for key, value in values.items():
        flag = flags[key]
        positive, _, negative = flag.declarations[0].partition("/")
        if flag.annotation is bool:  # one-sided, e.g. --no-cache: given, it sets the opposite of the default
            if value != fields[key].default:
                arguments.append(positive)
        elif isinstance(value, bool):
            arguments.append(positive if value else f"--{negative.lstrip('-')}")
        elif isinstance(value, list) and "float" in fields[key].type:
            arguments += [positive, ",".join(repr(v) for v in value)]
        elif isinstance(value, list):
            for item in value or ["none"]:
                arguments += [positive, item]
        else:
            arguments += [positive, str(value)]
    return arguments


def run_state(folder: Path) -> str:
    """``new`` (nothing there), ``restart`` (a run that wrote no checkpoint: started again over itself),
    ``resume`` or ``finished`` (its newest checkpoint is at its last step)."""
    from gankit.checkpoint import checkpoint_step, list_checkpoints
    from gankit.runfolder import holds_run

    if not holds_run(folder):
        return "new"
    steps = [checkpoint_step(path) for path in list_checkpoints(folder / "checkpoints")]
    if not steps:
        return "restart"
    try:
        planned = read_toml(folder / "config.toml").get("steps")
    except GankitError:  # no or a broken config.toml: resume rewrites it, or says what is wrong
        return "resume"
    return "finished" if isinstance(planned, int) and max(steps) >= planned else "resume"


def run_command(run: PlannedRun, folder: Path, state: str) -> list[str]:
    """The ``gankit`` arguments that start or continue a run (without the program)."""
    if state == "resume":
        return ["run", "--resume", str(folder / run.name), "--quiet"]
    return ["run", *run_arguments(run.values), "--quiet", *(["--overwrite"] if state == "restart" else [])]


# -- the manifest and the status file ---------------------------------------------------------------------


def manifest(grid: Mapping[str, list[str]], base: Mapping[str, Any], seeds: Sequence[int], runs: Sequence[PlannedRun]) -> dict:
    return {
        "gankit_sweep": 1,
        "grid": {key: list(values) for key, values in grid.items()},
        "seeds": list(seeds),
        "base": {key: value for key, value in base.items() if value is not None and key not in NOT_IDENTITY},
        "runs": [{"name": run.name, "settings": run.settings, "seed": run.seed} for run in runs],
    }


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GankitError(f"{path} cannot be read as a sweep manifest: {shortened(error)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
        raise GankitError(f"{path} is not a gankit sweep manifest")
    return document


def claim_folder(folder: Path, wanted: dict) -> None:
    """Write the manifest into a new sweep folder, or check that the folder holds this very sweep."""
    from gankit.checkpoint import write_atomic
    from gankit.runfolder import holds_run

    if folder.exists() and not folder.is_dir():
        raise GankitError(f"--out {folder} is a file, not a folder")
    if holds_run(folder):
        raise GankitError(f"--out {folder} holds a run, not a sweep; choose another --out")
    found = read_manifest(folder)
    if found is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / MANIFEST, json.dumps(wanted, indent=2) + "\n")
        except OSError as error:
            raise GankitError(f"cannot write the sweep folder {folder}: {error.strerror or error}") from None
        return
    for part in ("grid", "seeds", "base"):
        if found.get(part) != wanted[part]:
            raise GankitError(
                f"{folder} holds another sweep ({part} {_compact(found.get(part))} there, {_compact(wanted[part])} "
                "now); run it with its own flags, or choose another --out"
            )


def _compact(value: Any) -> str:
    return shortened(json.dumps(value, separators=(",", ":")), 100)


def record_status(folder: Path, name: str, entry: dict) -> None:
    """Set one run's entry of ``status.json``; two sweeps in one folder take turns (a lock), so none is lost."""
    from gankit.checkpoint import write_atomic

    with _locked(folder / ".status.lock"):
        statuses = read_status(folder)
        before, seconds = statuses.get(name, {}).get("wall_seconds"), entry.pop("seconds", None)
        if seconds is not None:  # the time of every attempt the sweep saw end
            entry["wall_seconds"] = round((before or 0.0) + seconds, 3)
        elif before is not None:
            entry["wall_seconds"] = before
        statuses[name] = entry
        write_atomic(folder / STATUS, json.dumps(statuses, indent=2, sort_keys=True) + "\n")


def read_status(folder: Path) -> dict[str, dict]:
    try:
        document = json.loads((folder / STATUS).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {key: value for key, value in document.items() if isinstance(value, dict)} if isinstance(document, dict) else {}


class _locked:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        import fcntl

        self.descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.descriptor, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        os.close(self.descriptor)


# -- running the children ---------------------------------------------------------------------------------

# A child dies with the sweep (Linux: the parent-death signal is SIGTERM, on which a run writes a checkpoint and
# stops), so a sweep killed outright leaves no orphan training on; one whose parent is already gone stops.
_CHILD = (
    "import os, signal, sys, runpy\n"
    "try:\n"
    "    import ctypes\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(130)\n"
    "sys.argv = ['gankit', *sys.argv[2:]]\n"
    "runpy.run_module('gankit', run_name='__main__', alter_sys=True)\n"
)


def threads_per_run(jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


@dataclass
class _Attempt:
    run: PlannedRun
    process: subprocess.Popen
    log: Path
    offset: int
    started: float


class _Signals:
    """While entered, SIGINT and SIGTERM are passed on to the running children (each its own process group,
    so a terminal's Ctrl-C reaches them once, through here) and no new run starts; a second signal is passed
    on too, which stops the children at once."""

    def __init__(self, running: dict) -> None:
        self.running = running
        self.requested: str | None = None
        self.number = signal.SIGINT
        self.signalled: set[int] = set()  # the children the newest signal was passed on to
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, previous in self.previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)

    def _handle(self, number: int, frame) -> None:
        self.requested = self.requested or signal.Signals(number).name
        self.number = number
        self.signalled.clear()
        self.pass_on()

    def pass_on(self) -> None:
        """Send the signal to the children that have not had it (one started as it came, too)."""
        for pid, attempt in list(self.running.items()):
            if pid not in self.signalled:
                self.signalled.add(pid)
                try:
                    attempt.process.send_signal(self.number)
                except OSError:  # ended meanwhile
                    pass


def _error_line(log: Path, offset: int, code: int) -> str:
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line[len("Error: "):] for line in lines if line.startswith("Error: ")]
    return shortened(errors[-1] if errors else (lines[-1] if lines else f"exit status {code}"), 300)


class Scheduler:
    """Runs the sweep's unfinished runs as child processes, ``jobs`` at a time; waits for a run another
    process holds (its run folder's lock) rather than failing it."""

    def __init__(self, folder: Path, jobs: int, threads: int | None, echo: Callable[[str], None]) -> None:
        self.folder, self.jobs, self.threads, self.echo = folder, jobs, threads, echo
        self.running: dict[int, _Attempt] = {}
        self.failed: list[str] = []
        self.finished = 0
        self.waiting_said: set[str] = set()

    def run(self, runs: Sequence[PlannedRun]) -> None:
        from gankit.runfolder import lock_holder

        pending = list(runs)
        total = len(runs)
        with _Signals(self.running) as signals:
            while pending or self.running:
                if signals.requested:
                    pending = []
                    signals.pass_on()
                while pending and len(self.running) < self.jobs and not signals.requested:
                    ready = next((run for run in pending if lock_holder(self.folder / run.name) is None), None)
                    if ready is None:
                        self._say_waiting(pending, lock_holder)
                        break
                    pending.remove(ready)
                    state = run_state(self.folder / ready.name)
                    if state == "finished":  # another process finished it meanwhile
                        self.echo(f"{ready.name}: finished by another process")
                        continue
                    self._start(ready, state)
                pending[:0] = self._reap(total, signals.requested)
                time.sleep(0.1)
        if signals.requested:
            from gankit.signals import CommandInterrupted

            raise CommandInterrupted(
                f"{signals.requested} received: gankit sweep stopped its runs (each wrote a checkpoint); "
                "run the same command again to finish them"
            )

    def _say_waiting(self, pending: Sequence[PlannedRun], lock_holder) -> None:
        if self.running:
            return
        for run in pending:
            if run.name not in self.waiting_said:
                self.waiting_said.add(run.name)
                holder = lock_holder(self.folder / run.name) or "another process"
                self.echo(f"{run.name}: waiting, another gankit process ({holder}) is running it")

    def _start(self, run: PlannedRun, state: str) -> None:
        log = self.folder / LOGS / f"{run.name.replace('/', '-')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ)
        if self.threads is not None:
            environment["GANKIT_THREADS"] = str(self.threads)
        with log.open("ab") as handle:
            offset = handle.tell()
            handle.write(f"$ gankit {shlex.join(run_command(run, self.folder, state))}\n".encode())
            handle.flush()
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(os.getpid()), *run_command(run, self.folder, state)],
                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=environment,
                start_new_session=True,
            )
        self.running[process.pid] = _Attempt(run, process, log, offset, time.monotonic())
        verb = {"resume": "resuming", "restart": "starting again"}.get(state, "starting")
        self.echo(f"{run.name}: {verb}")

    def _reap(self, total: int, stopping: str | None) -> list[PlannedRun]:
        """Record the children that ended; returns the runs to try again (their folder was busy)."""
        again = []
        for pid, attempt in list(self.running.items()):
            code = attempt.process.poll()
            if code is None:
                continue
            del self.running[pid]
            seconds = time.monotonic() - attempt.started
            name = attempt.run.name
            entry: dict[str, Any] = {"exit_code": code, "log": str(attempt.log.relative_to(self.folder)), "seconds": seconds}
            if code == 0:
                self.finished += 1
                record_status(self.folder, name, {**entry, "status": "finished"})
                self.echo(f"{name}: finished in {seconds:.1f} s ({self.finished}/{total})")
                continue
            error = _error_line(attempt.log, attempt.offset, code)
            if _IN_USE in error and not stopping:
                again.append(attempt.run)
                continue
            if code == 130 or (code < 0 and stopping):
                record_status(self.folder, name, {**entry, "status": "interrupted", "error": error})
                self.echo(f"{name}: interrupted ({error})")
                continue
            self.failed.append(name)
            record_status(self.folder, name, {**entry, "status": "failed", "error": error})
            self.echo(f"{name}: failed: {error}")
        return again


# -- the command ------------------------------------------------------------------------------------------


def sweep(
    folder: Path, grid_texts: Sequence[str], base: Mapping[str, Any], *, seeds: int, jobs: int,
    print_commands: bool = False, echo: Callable[[str], None] = print,
) -> list[str]:
    """Plan, check and run a sweep (or print its commands); returns the names of the runs that failed.

    Every value is checked before anything runs; ``CommandInterrupted`` on Ctrl-C or SIGTERM, once every
    child has stopped.
    """
    if seeds < 1:
        raise GankitError(f"--seeds must be at least 1, got {seeds}")
    if jobs < 1:
        raise GankitError(f"--jobs must be at least 1, got {jobs}")
    first = base.get("seed") or 0
    check_seed(first + seeds - 1, label=f"--seed {first} with --seeds {seeds} reaches a seed that")
    base = {key: value for key, value in base.items() if key != "seed"}
    folder = Path(os.path.normpath(folder))
    grid = parse_grid(grid_texts)
    seed_list = list(range(first, first + seeds))
    runs = plan_runs(folder, grid, base, seed_list)
    check_runs(runs)
    claim_folder(folder, manifest(grid, base, seed_list, runs))
    states = {run.name: run_state(folder / run.name) for run in runs}
    todo = [run for run in runs if states[run.name] != "finished"]
    _record_finished_elsewhere(folder, [run for run in runs if states[run.name] == "finished"])
    if print_commands:
        for run in todo:
            echo(shlex.join(["gankit", *run_command(run, folder, states[run.name])]))
        return []
    threads = None if base.get("threads") is not None else threads_per_run(jobs)
    done = len(runs) - len(todo)
    settings_count = len(runs) // len(seed_list)
    echo(
        f"sweep {folder}: {_count(len(runs), 'run')} ({_count(settings_count, 'setting')} x {_count(len(seed_list), 'seed')}); "
        f"{done} finished before, {len(todo)} to run, {min(jobs, max(len(todo), 1))} at once"
        + (f", {_count(threads, 'thread')} each" if threads is not None and todo else "")
    )
    scheduler = Scheduler(folder, jobs, threads, echo)
    scheduler.run(todo)
    return scheduler.failed


def _record_finished_elsewhere(folder: Path, finished: Sequence[PlannedRun]) -> None:
    """Runs that ended while no sweep watched (a printed command, a sweep killed as they ended) are finished too."""
    statuses = read_status(folder)
    for run in finished:
        if statuses.get(run.name, {}).get("status") != "finished":
            record_status(folder, run.name, {"status": "finished"})


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
