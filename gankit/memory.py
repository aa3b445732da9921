"""Memory estimates made before any data is decoded: a run that cannot fit fails in one line, not after minutes.

The engine reserves what the networks will need (see :func:`reserved`); a data source then asks
:func:`require` whether its decoded images fit beside them in the memory that is available now.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

from gankit.errors import GankitError

_reservations: list[tuple[int, str]] = []


def available_bytes() -> Optional[int]:
    """Memory a new allocation can take: ``MemAvailable`` of /proc/meminfo (else free physical pages), capped
    by the cgroup's limit (containers); None when none of them can be read (then nothing is refused on a guess)."""
    candidates = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            candidates += [int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as limit, open("/sys/fs/cgroup/memory.current", encoding="ascii") as used:
            cap, current = limit.read().strip(), used.read().strip()
        if cap != "max":
            candidates.append(max(0, int(cap) - int(current)))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def describe_bytes(count: float) -> str:
    if count >= 10**21:  # beyond the units below (and beyond a float, for absurd counts)
        return f"10^{len(str(int(count))) - 1} bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


@contextmanager
def reserved(size: int, what: str) -> Iterator[None]:
    """Count ``size`` bytes for ``what`` (e.g. the networks) in every :func:`require` made while entered."""
    _reservations.append((int(size), what))
    try:
        yield
    finally:
        _reservations.remove((int(size), what))


def require(size: int, what: str, *, label: str) -> None:
    """Refuse in one line when ``size`` bytes for ``what`` plus the reservations exceed the available memory."""
    available = available_bytes()
    if available is None:
        return
    total = int(size) + sum(amount for amount, _ in _reservations)
    if total <= available:
        return
    parts = [f"{what} ({describe_bytes(size)})", *(f"{name} ({describe_bytes(amount)})" for amount, name in _reservations)]
    raise GankitError(
        f"{label}: not enough memory: {' + '.join(parts)} need about {describe_bytes(total)}, "
        f"{describe_bytes(available)} available; use a smaller image size or fewer images"
    )
