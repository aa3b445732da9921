"""Shared fixtures: a private cache folder for the whole session, and tiny run settings."""
from __future__ import annotations

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


@pytest.fixture
def one_thread():
    """torch on one thread: runs compared bit for bit use the same thread count, and tests do not fight
    over the shared cores (reliability tests: test_resume, test_checkpoint, test_divergence, test_bad_input)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
