"""Where gankit keeps files it can rebuild (decoded images, rendered datasets): one rule for every cache.

Also how a cache file is written: into a temporary file beside it, named after the writing process and locked
while it is written, then renamed into place. A writer killed by SIGKILL leaves its temporary file behind;
the next process that opens the cache removes it, but never one whose writer is still alive.
"""
from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gankit.runfolder import lock_held

# ``<final name>.pid<PID>.<random>.tmp``: the PID says who wrote it, the lock says whether it still writes.
_TEMPORARY = re.compile(r"\.pid(\d+)\.[A-Za-z0-9_]+\.tmp$")


def cache_directory(cache_dir=None) -> Path:
    """``cache_dir`` if given, else ``$GANKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/gankit``, else ``~/.cache/gankit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    explicit = os.environ.get("GANKIT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "gankit"
    return Path.home() / ".cache" / "gankit"


@contextmanager
def cache_temporary(path: Path, *, hidden: bool = False) -> Iterator[tuple[int, Path]]:
    """A new, locked temporary file ``(descriptor, path)`` for writing ``path``; removed unless renamed into place.

    The lock (released by the kernel when the process dies) tells :func:`remove_stale_temporaries` that the
    writer is alive; the PID in the name lets it tell so also in the instant before the lock is taken.
    ``hidden``: the name starts with a dot (run files and user outputs, where a visible leftover would confuse).
    """
    import secrets

    temp = path.with_name(f"{'.' if hidden else ''}{path.name}.pid{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield handle, temp
    finally:
        os.close(handle)  # releases the lock
        try:
            temp.unlink()
        except FileNotFoundError:  # renamed into place
            pass


def remove_stale_temporaries(folder: Path, *, prefix: str = "") -> list[Path]:
    """Remove the temporary files in ``folder`` (those whose name starts with ``prefix``) whose writer has died
    (killed mid-write); returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMPORARY.search(entry.name) if entry.name.startswith(prefix) else None
        if found and not _process_alive(int(found.group(1))) and _unlocked(Path(entry.path)):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:  # another process cleaned it first, or the folder is read-only
                pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's) or unrepresentable: never remove on a guess
    return True


def _unlocked(path: Path) -> bool:
    """Nobody holds the file's lock (a writer in another PID namespace, e.g. a container, still would); a file
    whose lock cannot be probed counts as held: never remove on a guess."""
    return lock_held(path) is False
