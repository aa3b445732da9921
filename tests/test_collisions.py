"""A third-party plugin that registers names gankit's builtins already use (issue 12, case 24): runs record
every component as ``plugin:name``, so neither a plain ``gankit run`` nor an older run breaks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gankit.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint, save_checkpoint
from gankit.cli import app

# Its factories raise when built: a test passes only if gankit picked the builtin, never the rival.
RIVAL = """
import gankit

def rival(**options):
    raise RuntimeError("the rival plugin was built")

@gankit.hookimpl
def gankit_register_losses(register):
    register("bce", rival, description="a rival BCE", aliases=("rival-loss",))

@gankit.hookimpl
def gankit_register_architectures(register):
    register("DCGAN", rival, description="a rival DCGAN")
"""

TINY = ["--data", "digits:count=256", "--batch-size", "16", "--z-dim", "16", "--device", "cpu", "--quiet",
        "--checkpoint-every", "2", "--sample-every", "2"]


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def recorded(run: Path) -> dict[str, str]:
    import tomllib

    config = tomllib.loads((run / "config.toml").read_text())
    return {key: config[key] for key in ("arch", "loss", "data")}


def make_legacy(run: Path, *, keep_plugin_record: bool = True) -> None:
    """Rewrite a run as gankit 0.1 wrote it: bare names in config.toml and in the checkpoints' metadata."""

    def bare(text: str) -> str:
        return text.replace("dcgan:dcgan", "dcgan").replace("losses:bce", "bce").replace("digits:digits", "digits")

    (run / "config.toml").write_text(bare((run / "config.toml").read_text()))
    for path in list_checkpoints(run / "checkpoints"):
        tensors, metadata = load_checkpoint(path)
        metadata["config"] = {k: bare(v) if isinstance(v, str) else v for k, v in metadata["config"].items()}
        if not keep_plugin_record:
            del metadata["components"]
        save_checkpoint(path, tensors, metadata)
    assert recorded(run)["arch"] == "dcgan:width=8"


@pytest.fixture
def legacy_run(tmp_path, install_entry_points, one_thread) -> Path:
    """A 2-step run with bare names, trained before the rival plugin was installed."""
    install_entry_points({})
    run = tmp_path / "legacy"
    invoke("run", *TINY, "--arch", "dcgan:width=8", "--loss", "bce", "--steps", "2", "--out", run)
    return run


def test_new_runs_record_every_component_with_its_plugin(tmp_path, install_entry_points, one_thread):
    install_entry_points({})
    run = tmp_path / "run"
    invoke("run", *TINY, "--arch", "dcgan:width=8", "--steps", "2", "--logger", "csv", "--out", run)
    assert recorded(run) == {"arch": "dcgan:dcgan:width=8", "loss": "losses:bce", "data": "digits:digits:count=256"}
    assert 'logger = ["loggers:csv"]' in (run / "config.toml").read_text()
    _, metadata = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert metadata["config"]["loss"] == "losses:bce"


def test_a_plain_run_is_not_broken_by_a_plugin_taking_builtin_names(tmp_path, install_entry_points, one_thread):
    install_entry_points({"rival": RIVAL})
    run = tmp_path / "run"
    # No --arch, no --loss: the defaults and the data's recommended architecture name their plugins.
    invoke("run", *TINY, "--steps", "1", "--out", run)
    assert recorded(run)["arch"] == "dcgan:dcgan:width=32" and recorded(run)["loss"] == "losses:bce"
    invoke("sample", run, "-n", "4", "--out", tmp_path / "s.png")


def test_an_older_run_with_bare_names_samples_and_resumes_after_the_plugin_came(tmp_path, legacy_run,
                                                                               install_entry_points):
    make_legacy(legacy_run)
    install_entry_points({"rival": RIVAL})
    # The checkpoint records which plugin built each component; that settles the names now taken twice.
    invoke("sample", legacy_run, "-n", "4", "--out", tmp_path / "s.png")
    invoke("run", "--resume", legacy_run, "--steps", "4", "--quiet")
    assert recorded(legacy_run)["arch"] == "dcgan:dcgan:width=8"  # the resumed run records qualified names
    assert checkpoint_step(list_checkpoints(legacy_run / "checkpoints")[-1]) == 4


def test_an_older_bare_name_without_a_plugin_record_lists_the_candidates(tmp_path, legacy_run, install_entry_points):
    make_legacy(legacy_run, keep_plugin_record=False)
    install_entry_points({"rival": RIVAL})
    result = CliRunner().invoke(app, ["sample", str(legacy_run), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "architecture 'dcgan' is provided by several plugins; choose one of: dcgan:dcgan, rival:dcgan" in result.output


def test_list_plugins_shows_which_names_collide(install_entry_points):
    install_entry_points({"rival": RIVAL})
    listing = {p["name"]: p for p in json.loads(invoke("list-plugins", "--json").output)}
    bce = [c for c in listing["losses"]["components"] if c["name"] == "bce"][0]
    assert bce["collides_with"] == ["rival:bce"]
    rival = {c["name"]: c for c in listing["rival"]["components"]}
    assert rival["dcgan"]["collides_with"] == ["dcgan:dcgan"] and rival["bce"]["aliases"] == ["rival-loss"]
    hinge = [c for c in listing["losses"]["components"] if c["name"] == "hinge"][0]
    assert hinge["collides_with"] == []
    table = CliRunner().invoke(app, ["list-plugins"], env={"COLUMNS": "200"}).output
    assert "also: rival:bce" in table and "also: losses:bce" in table


def test_info_asks_for_the_plugin_when_a_name_is_taken_twice(install_entry_points):
    install_entry_points({"rival": RIVAL})
    result = CliRunner().invoke(app, ["info", "bce"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: 'bce' names several components; choose one of: loss:losses:bce, loss:rival:bce"
    details = json.loads(invoke("info", "rival:bce", "--json").output)
    assert (details["plugin"], details["description"], details["collides_with"]) == ("rival", "a rival BCE", ["losses:bce"])
