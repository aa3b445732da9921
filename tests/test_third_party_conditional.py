"""A third-party conditional architecture, written from the docs alone (tests/plugins/gankit-tinycond), is
installed for real with pip (offline, into a temporary folder), then listed, trained with --conditional and
sampled by class through the `gankit` command line in a subprocess that finds it by its entry point."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tests" / "plugins" / "gankit-tinycond"
PER_CLASS = 3


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees gankit (this checkout) and the plugin installed in a folder."""
    work = tmp_path_factory.mktemp("tinycond")
    source = work / "source"
    # pip builds in the source folder (build/, *.egg-info): build a copy, never the checkout.
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), str(source)],
        check=True, capture_output=True, text=True,
    )
    assert (site / "gankit_tinycond-0.1.0.dist-info" / "entry_points.txt").exists()
    environment = dict(os.environ)
    environment.update(
        PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
        # Only this entry-point plugin: the test must not depend on what else is installed.
        GANKIT_LOAD_PLUGINS="tinycond",
        GANKIT_STRICT_PLUGINS="1",
    )
    return environment


# One process runs the commands in turn through the CLI app, so torch is imported once, not once per command.
COMMAND_LINES = """
import json, sys, traceback
from typer.testing import CliRunner
from gankit.cli import app
results = []
for arguments in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, arguments)
    failure = "".join(traceback.format_exception(result.exception)) if result.exit_code else ""
    results.append({"exit_code": result.exit_code, "output": result.output + failure})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def commands(installed, tmp_path_factory) -> dict[str, str]:
    """Lists the plugins, trains a conditional run with the plugin and samples it by class; each command's
    output, by name, once all succeeded."""
    work = tmp_path_factory.mktemp("commands")
    run = str(work / "run")
    command_lines = {
        "list": ["list-plugins", "--json"],
        "run": ["run", "--arch", "tinycond:width=4", "--data", "digits:count=256", "--conditional", "--steps", "2",
                "--batch-size", "16", "--z-dim", "8", "--device", "cpu", "--out", run, "--quiet"],
        "png": ["sample", run, "--class", "0,1", "-n", str(PER_CLASS), "--out", str(work / "x.png")],
        "npy": ["sample", run, "--class", "1,0", "-n", str(PER_CLASS), "--out", str(work / "x.npy")],
    }
    finished = subprocess.run(
        [sys.executable, "-c", COMMAND_LINES, json.dumps(list(command_lines.values()))],
        env=installed, cwd=work, capture_output=True, text=True,
    )
    assert finished.returncode == 0, finished.stderr
    results = dict(zip(command_lines, json.loads(finished.stdout.splitlines()[-1])))
    for name, result in results.items():
        assert result["exit_code"] == 0, f"{name}: {result['output']}"
    return {"folder": work, **{name: result["output"] for name, result in results.items()}}


def test_list_plugins_shows_the_installed_plugin_and_its_architecture(commands):
    plugins = {plugin["name"]: plugin for plugin in json.loads(commands["list"])}
    tinycond = plugins["tinycond"]
    assert (tinycond["status"], tinycond["source"], tinycond["version"]) == ("ok", "entry point", "0.1.0")
    assert tinycond["provides"] == {"architecture": ["tinycond"]}


def test_a_conditional_run_records_the_plugin_and_the_classes(commands):
    run = commands["folder"] / "run"
    config = (run / "config.toml").read_text()
    assert 'arch = "tinycond:tinycond:width=4"' in config and "conditional = true" in config
    assert (run / "checkpoints" / "step-0000002.safetensors").exists()
    # The training grid of a conditional run: one row per digit class (10), 8 columns.
    grid = Image.open(run / "samples" / "step-0000002.png")
    assert tile_layout(grid.size, tile=32, columns=8, rows=10), grid.size


def test_the_factory_builds_plain_networks_unless_asked_for_classes_or_class_logits(monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(PACKAGE))
    from gankit_tinycond import tinycond

    z, images, labels = torch.zeros(4, 8), torch.zeros(4, 1, 32, 32), torch.tensor([0, 1, 2, 9])
    plain_generator, plain_discriminator = tinycond(shape=(1, 32, 32), z_dim=8)
    plain_names = [name for network in (plain_generator, plain_discriminator) for name, _ in network.named_parameters()]
    assert not [name for name in plain_names if "embedding" in name or "projection" in name]
    assert plain_generator(z).shape == (4, 1, 32, 32) and plain_discriminator(images).shape == (4,)
    generator, discriminator = tinycond(shape=(1, 32, 32), z_dim=8, num_classes=10,
                                        discriminator_outputs=("class_logits",))
    scores, outputs = discriminator(generator(z, labels), labels)
    assert scores.shape == (4,) and outputs["class_logits"].shape == (4, 10)


def test_sample_by_class_writes_one_row_per_class(commands):
    grid = Image.open(commands["folder"] / "x.png")
    assert tile_layout(grid.size, tile=32, columns=PER_CLASS, rows=2), grid.size


def test_sample_by_class_to_npy_writes_the_labels(commands):
    samples = np.load(commands["folder"] / "x.npy")
    labels = np.load(commands["folder"] / "x.labels.npy")
    assert samples.shape == (2 * PER_CLASS, 1, 32, 32)
    assert labels.dtype == np.int64 and sorted(labels.tolist()) == [0] * PER_CLASS + [1] * PER_CLASS
    assert np.abs(samples).max() <= 1.0


def tile_layout(size: tuple[int, int], *, tile: int, columns: int, rows: int) -> bool:
    """Whether an image of ``size`` is a grid of ``rows`` x ``columns`` tiles with the same padding between
    and around them (any padding up to 4 pixels)."""
    width, height = size
    return any(
        (width, height) == (columns * tile + (columns + 1) * padding, rows * tile + (rows + 1) * padding)
        for padding in range(5)
    )
