"""How many CPU threads torch computes with: the ``threads`` setting or ``GANKIT_THREADS``, applied before a
run builds anything. Threads change speed, and on CPU the last bits of the results (docs/performance.md)."""
from __future__ import annotations

import os
import re
from typing import Mapping

from gankit.errors import GankitError

ENVIRONMENT_VARIABLE = "GANKIT_THREADS"
# What 0 or no setting means. One thread: on a 2-core machine shared with other jobs, 2 threads ran a small
# DCGAN 5 to 17 times slower than 1 (oversubscribed cores spin-wait), measurements in docs/performance.md.
# OMP_NUM_THREADS, when set, is the user's choice and torch already honours it.
DEFAULT_THREADS = 1


def requested_threads(setting: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count asked for: the setting (flag or config file) first, then ``GANKIT_THREADS``;
    0 or neither means the default (None: leave torch's count, which follows OMP_NUM_THREADS)."""
    environ = os.environ if environ is None else environ
    if setting is None:
        setting = _from_environment(environ)
    if setting is not None and setting < 0:
        raise GankitError(f"threads must be zero (the default) or positive, got {setting}")
    if setting:
        return setting
    return None if environ.get("OMP_NUM_THREADS", "").strip() else DEFAULT_THREADS


def apply_threads(setting: int | None, environ: Mapping[str, str] | None = None) -> int:
    """Set torch's thread count as asked; returns the count in use."""
    import torch

    threads = requested_threads(setting, environ)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _from_environment(environ: Mapping[str, str]) -> int | None:
    text = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return None
    if not re.fullmatch(r"-?\d+", text):
        raise GankitError(f"environment variable {ENVIRONMENT_VARIABLE} must be a whole number of threads, got {text!r}")
    return int(text)
