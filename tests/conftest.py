"""Shared fixtures: a private cache folder for the whole session, tiny run settings, and plugins installed as
entry points for one test."""
from __future__ import annotations

import textwrap
from importlib import metadata

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    # Generated data (digits, classifiers, image caches) goes to a temporary folder, never the user's cache.
    import os

    folder = tmp_path_factory.mktemp("gankit-cache")
    previous = os.environ.get("GANKIT_CACHE_DIR")
    os.environ["GANKIT_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("GANKIT_CACHE_DIR", None)
    else:
        os.environ["GANKIT_CACHE_DIR"] = previous


# Small enough to train a few steps in well under a second on a 2-core CPU.
TINY_RUN = {
    "arch": "dcgan:width=8",
    "data": "digits:count=256",
    "batch_size": 16,
    "steps": 4,
    "z_dim": 16,
    "sample_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "device": "cpu",
}


@pytest.fixture
def tiny_run() -> dict:
    return dict(TINY_RUN)


# A short bce run on the 2-D grid: enough for its discriminator to estimate a density ratio (the samplers that use
# it: tests/test_rejection.py, tests/test_refinement.py).
GRID_RUN = {"data": "grid:count=2000", "steps": 60, "batch_size": 64, "sample_every": 60, "log_every": 20,
            "checkpoint_every": 60, "device": "cpu", "seed": 0}


@pytest.fixture
def grid_run_config() -> dict:
    return dict(GRID_RUN)


@pytest.fixture(scope="session")
def grid_run(tmp_path_factory):
    """A finished :data:`GRID_RUN`, trained once per session on one thread (tests only read it)."""
    import torch

    from gankit.api import train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(GRID_RUN, tmp_path_factory.mktemp("grid-run") / "grid")
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    """torch on one thread: runs compared bit for bit use the same thread count, and tests do not fight
    over the shared cores (reliability tests: test_resume, test_checkpoint, test_divergence, test_bad_input)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def install_entry_points(tmp_path, monkeypatch):
    """``install({name: module source})``: plugins seen as installed entry points (modules on sys.path), with a
    fresh process-wide plugin set and registry; everything is undone after the test."""
    import gankit.plugins
    import gankit.registry

    def install(sources: dict[str, str]) -> None:
        folder = tmp_path / "plugin-src"
        folder.mkdir(exist_ok=True)
        points = []
        for name, source in sources.items():
            (folder / f"badplugin_{name}.py").write_text(textwrap.dedent(source))
            points.append(metadata.EntryPoint(name=name, value=f"badplugin_{name}", group="gankit"))
        monkeypatch.syspath_prepend(str(folder))
        original = metadata.entry_points

        def entry_points(**params):
            # Only gankit's group is replaced; other libraries still see their own entry points.
            return metadata.EntryPoints(points) if params.get("group") == "gankit" else original(**params)

        monkeypatch.setattr(metadata, "entry_points", entry_points)
        monkeypatch.setattr(gankit.plugins, "_default", None)
        monkeypatch.setattr(gankit.registry, "_default", None)

    yield install
    gankit.plugins.reset_default_plugins()
