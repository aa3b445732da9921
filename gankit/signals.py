"""Ctrl-C and SIGTERM during training: finish the current step, write a checkpoint, say how to resume.

The first signal only sets a flag that the training loop reads after each step; a second one stops at
once (StoppedAtOnce, a KeyboardInterrupt), which is safe because checkpoints are written atomically.
Outside training, Ctrl-C ends a command as CommandInterrupted: one line, exit status 130; SIGTERM
(while a data cache is built) stops the process as Ctrl-C does, so that cleanup code runs.
"""
from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path

# The shell's convention for "ended by SIGINT", used for SIGTERM too: the run stopped on request.
INTERRUPTED_EXIT_CODE = 130


class TrainingInterrupted(Exception):
    """Training stopped on a signal after a whole step; ``checkpoint`` holds that step (None if none could be written)."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None, run_dir: Path, total: int | None = None) -> None:
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        self.total = total  # the run's planned steps
        super().__init__(self.message())

    @property
    def resumable(self) -> bool:
        """Whether ``--resume`` has something left to do (a run stopped at its last step has finished)."""
        return self.checkpoint is None or self.total is None or self.step < self.total

    def resume_command(self) -> str:
        return f"gankit run --resume {shlex.quote(str(self.run_dir))}"

    def message(self) -> str:
        where = f"checkpoint written to {self.checkpoint}" if self.checkpoint else "no checkpoint could be written"
        return f"{self.signal_name} received: stopped after step {self.step}, {where}"


class Interrupted(KeyboardInterrupt):
    """Stopped by a signal outside training; the message is the one line to print, ``signal_name`` the signal."""

    def __init__(self, message: str, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name


def signal_name(stop: BaseException) -> str:
    """The signal behind a KeyboardInterrupt: SIGINT unless :class:`Interrupted` says otherwise."""
    return getattr(stop, "signal_name", "SIGINT")


def _raise_terminated(number: int, frame) -> None:
    raise Interrupted("SIGTERM received: stopped", "SIGTERM")


def stop_on_sigterm() -> object:
    """Make SIGTERM raise :class:`Interrupted` (so ``finally`` blocks remove temporary files) instead of killing
    the process outright; returns the previous handler for :func:`restore_sigterm`. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def restore_sigterm(previous: object) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


class StoppedAtOnce(KeyboardInterrupt):
    """A second signal during training: the step in progress was abandoned, nothing more was written."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(signal_name)

    def message(self, run_dir: Path) -> str:
        from gankit.checkpoint import list_checkpoints

        try:
            newest = list_checkpoints(Path(run_dir) / "checkpoints")[-1:]
        except OSError:
            newest = []
        if not newest:
            return f"second {self.signal_name}: stopped at once; no checkpoint was written yet"
        return (
            f"second {self.signal_name}: stopped at once; the newest checkpoint is {newest[0]} "
            f"(resume with: gankit run --resume {shlex.quote(str(run_dir))})"
        )


class CommandInterrupted(Exception):
    """Ctrl-C outside training: the CLI prints ``Interrupted: <message>`` and exits with status 130."""


class StopRequest:
    """While entered, SIGINT and SIGTERM ask the loop to stop (``requested`` names the signal) instead of killing it.

    Outside the main thread Python cannot install handlers; there the request is never set and the
    signals keep their usual effect.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, previous in self._previous.items():
            # A handler installed from C reads back as None; the default is the closest equivalent.
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        if self.requested is not None:  # asked twice: the user does not want to wait for the step
            raise StoppedAtOnce(signal.Signals(number).name)
        self.requested = signal.Signals(number).name
