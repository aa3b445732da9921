"""Where gankit keeps files it can rebuild (decoded images, rendered datasets): one rule for every cache."""
from __future__ import annotations

import os
from pathlib import Path


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
