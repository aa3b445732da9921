"""The run folder's life cycle: one process writes it at a time (an OS file lock), and ``--overwrite`` moves
the old run aside until the new one has written its first checkpoint, putting it back if the new one fails.

The lock is ``fcntl.flock`` on ``<run>/.gankit.lock``: the kernel releases it when the process ends, however
it ends (``kill -9`` too), so a lock is never stale. The file holds the PID of the holder, for the message of
the process that finds it taken. Under torchrun only rank 0 writes the run folder, so only rank 0 locks it.
"""
from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from gankit.errors import GankitError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the folder is not locked there
    fcntl = None

LOCK_NAME = ".gankit.lock"
# What gankit writes into a run folder (the builtin loggers' files included): the entries --overwrite moves
# aside and puts back. Nothing else in the folder (the user's own files, e.g. with --out .) is ever moved.
# The checkpoints move aside first and come back last, so after a kill half-way they are aside, and
# recover_interrupted_replacement puts the whole old run back.
RUN_ENTRIES = (
    "checkpoints", "config.toml", "metrics.jsonl", "eval.jsonl", "samples", "losses.png", "evolution.gif",
    "metrics.csv", "eval.csv", "tensorboard",
)
REPLACED_MARK = ".replaced-"


def holds_run(folder: Path) -> bool:
    """A run folder: it has a config.toml or a checkpoints folder."""
    return (folder / "config.toml").exists() or (folder / "checkpoints").exists()


def refuse_existing_run(folder: Path, replace: bool) -> None:
    if holds_run(folder) and not replace:
        raise GankitError(
            f"{folder} already holds a run; continue it with --resume {folder}, choose another --out, "
            "or pass --overwrite to replace it"
        )


def os_error_message(error: OSError, folder: Path) -> str:
    """One line naming the path and the OS reason (a full or read-only disk, a name too long...)."""
    path = error.filename if error.filename is not None else folder
    reason = error.strerror or str(error)
    return f"cannot write the run folder {folder}: {path}: {reason}"


class RunFolderLock:
    """An exclusive lock on a run folder, created if missing; a second holder fails in one line with the PID."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.descriptor: int | None = None
        self.created = False  # whether this process made the lock file (and may remove it again)

    def acquire(self) -> RunFolderLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise GankitError(os_error_message(error, self.folder)) from None
        # A lock file removed by a failed holder (see release) may be the one this process opened: then lock
        # the file that is there now, so two processes never hold locks on two different files.
        for _ in range(10):
            descriptor = self._open_and_lock()
            if _same_file(descriptor, self.path):
                break
            os.close(descriptor)
        else:
            raise GankitError(f"{self.path} keeps being replaced by another process; try again")
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        except OSError as error:
            os.close(descriptor)
            raise GankitError(os_error_message(error, self.folder)) from None
        self.descriptor = descriptor
        return self

    def _open_and_lock(self) -> int:
        try:
            # O_EXCL first, to know whether this process made the file; O_NOFOLLOW: a lock file planted as a
            # symlink must not make gankit write somewhere else.
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
                self.created = True
            except FileExistsError:
                descriptor = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
                self.created = False
        except OSError as error:
            raise GankitError(os_error_message(error, self.folder)) from None
        if fcntl is None:
            return descriptor
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GankitError(os_error_message(error, self.folder)) from None
            raise GankitError(
                f"{self.folder} is in use by another gankit process ({holder}), which is still writing it; "
                "wait for it to end or stop it, or choose another --out"
            ) from None
        return descriptor

    def release(self, *, remove: bool = False) -> None:
        """Unlock. ``remove``: also delete the lock file (while still holding it), for a process that made it
        and then wrote nothing, so that a failed command leaves the folder as it found it."""
        if self.descriptor is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self.descriptor)
        self.descriptor = None


def lock_holder(folder: str | Path) -> str | None:
    """Who holds the run folder's lock (``PID n``), or None when no process does; takes no lock it keeps, so a
    scheduler (gankit sweep) can wait for a run another process is writing instead of failing on it."""
    path = Path(folder) / LOCK_NAME
    if not lock_held(path):  # no lock file (never run), or one that cannot be probed: the run itself will say
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return "PID unknown"
    try:
        return _read_pid(descriptor)
    finally:
        os.close(descriptor)


def lock_held(path: Path) -> bool | None:
    """Whether a process holds an ``flock`` on the file ``path`` now: True or False, or None where that cannot
    be told (no such file, one this process may not open, a symlink, no flock on this system). The probe is a
    shared lock, released at once: it needs only read access, and two probes never block each other."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as error:
        return True if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
    finally:
        os.close(descriptor)  # releases the probe's lock


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        opened, named = os.fstat(descriptor), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_pid(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"PID {text}" if text.isdigit() else "PID unknown"


class Replacement:
    """The old run's entries, moved into a hidden sibling folder ``.<name>.replaced-<pid>``: deleted by
    :meth:`commit` once the new run has a checkpoint, put back by :meth:`restore` if it fails before."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.aside = folder.parent / f".{folder.name}{REPLACED_MARK}{os.getpid()}"
        self.moved: list[str] = []

    def move_aside(self) -> None:
        self.aside.mkdir()
        try:
            for name in RUN_ENTRIES:
                if _exists(self.folder / name):
                    os.replace(self.folder / name, self.aside / name)
                    self.moved.append(name)
        except BaseException:  # Ctrl-C or a disk error half-way: the old run goes back as it was
            self.restore()
            raise

    def commit(self) -> None:
        shutil.rmtree(self.aside, ignore_errors=True)

    def restore(self) -> None:
        restore_aside(self.folder, self.aside)


def restore_aside(folder: Path, aside: Path) -> None:
    """Put the entries of ``aside`` back into ``folder``, over what a failed new run wrote there."""
    for name in reversed(RUN_ENTRIES):
        if _exists(aside / name):
            _remove(folder / name)
            os.replace(aside / name, folder / name)
    shutil.rmtree(aside, ignore_errors=True)


def recover_interrupted_replacement(folder: Path, warn: Callable[[str], None]) -> None:
    """An ``--overwrite`` killed before it finished (``kill -9``, power loss) leaves the old run aside; called
    under the lock, so no other process is replacing this folder. The new run got as far as a checkpoint:
    the old one is deleted, as it would have been; else the old run is put back."""
    for aside in folder.parent.glob(f".{_glob_escape(folder.name)}{REPLACED_MARK}*"):
        if not aside.is_dir():
            continue
        if any((folder / "checkpoints").glob("*.safetensors")):
            shutil.rmtree(aside, ignore_errors=True)
            warn(f"removed {aside}, the old run that an interrupted --overwrite of {folder} had moved aside")
        else:
            restore_aside(folder, aside)
            warn(f"put back the old run of {folder}: an --overwrite was interrupted before its first checkpoint")


@contextmanager
def writing_run(
    folder: Path, *, new_run: bool, replace: bool, main: bool, warn: Callable[[str], None]
) -> Iterator[Callable]:
    """Hold ``folder`` for a run that writes it; yields a listener to add to the trainer (it commits an
    ``--overwrite`` at the first checkpoint). For a new run the folder must not hold a run unless ``replace``.

    On failure: an OSError becomes one line naming the path and the reason; a new run that wrote no
    checkpoint leaves no files of its own behind after an OSError, and a replacement puts the old run back
    after any failure. Ranks other than 0 (``main`` false) write nothing and take no lock.
    """
    if not main:
        try:
            yield lambda event: None
        except OSError as error:
            raise GankitError(os_error_message(error, folder)) from None
        return
    created = _first_missing(folder)
    lock = RunFolderLock(folder).acquire()
    replacement = None
    committed = False
    before = set(RUN_ENTRIES)  # until known: a failure removes nothing
    failed = False

    def on_event(event) -> None:
        nonlocal committed
        if event.name == "checkpoint" and not committed:
            committed = True
            if replacement is not None:
                replacement.commit()

    try:
        recover_interrupted_replacement(folder.resolve(), warn)
        before = {name for name in RUN_ENTRIES if _exists(folder / name)}
        if new_run and holds_run(folder):
            refuse_existing_run(folder, replace)  # another process may have written a run here since the first check
            moving = Replacement(folder.resolve())
            moving.move_aside()  # puts back what it moved if it is interrupted
            replacement, before = moving, set()
        yield on_event
    except BaseException as error:
        failed = True
        if not committed and new_run and (replacement is not None or isinstance(error, OSError)):
            _remove_own_entries(folder, before, created)
        if replacement is not None and not committed:
            replacement.restore()
        if isinstance(error, OSError):
            raise GankitError(os_error_message(error, folder)) from None
        raise
    finally:
        # A command that failed before writing a checkpoint takes back the lock file it made.
        lock.release(remove=lock.created and not committed and failed)


def _remove_own_entries(folder: Path, before: set[str], created: Path | None) -> None:
    for name in RUN_ENTRIES:
        if name not in before:
            _remove(folder / name)
    if created is not None:  # the folders this run made: empty again, so gone again
        _remove(folder / LOCK_NAME)
        for path in (folder, *folder.parents):
            try:
                path.rmdir()
            except OSError:
                break
            if path == created:
                break


def _first_missing(folder: Path) -> Path | None:
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif _exists(path):
        path.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
