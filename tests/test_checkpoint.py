"""Checkpoints: atomic writes, no pickle ever read, keep-last-K and best, clear errors for damaged files."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gankit import checkpoint as checkpoint_module
from gankit.checkpoint import (
    BEST_NAME,
    checkpoint_step,
    join_state,
    list_checkpoints,
    load_checkpoint,
    newest_loadable_checkpoint,
    save_checkpoint,
    split_state,
)
from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError

SMALL_RUN = {
    "arch": "dcgan:width=8", "data": "digits:count=256", "batch_size": 32, "steps": 8, "z_dim": 16,
    "device": "cpu", "checkpoint_every": 2, "log_every": 2, "sample_every": 8,
}


# torch on one thread (tests/conftest.py): same arithmetic in every run compared, no fight over cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails the test if anything tries to unpickle."""

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def train(out, **changes) -> Trainer:
    trainer = Trainer(RunConfig.from_sources(overrides={**SMALL_RUN, **changes}))
    trainer.train(out)
    return trainer


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "step-0000001.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"step": 1})
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 1})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left behind
    tensors, metadata = load_checkpoint(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and metadata["step"] == 1


def test_optimizer_state_round_trips_through_json_exactly():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), betas=(0.5, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    tensors, document = split_state("optimizer_g", state)
    rebuilt = join_state(json.loads(json.dumps(document)), tensors)
    assert rebuilt["param_groups"] == state["param_groups"]  # betas stay a tuple, indices stay ints
    assert rebuilt["state"].keys() == state["state"].keys()
    assert torch.equal(rebuilt["state"][0]["exp_avg"], state["state"][0]["exp_avg"])


def test_a_checkpoint_holds_everything_needed_to_continue(tmp_path):
    trainer = train(tmp_path / "run", steps=2)
    tensors, metadata = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-0000002.safetensors")
    assert any(name.startswith("generator.") for name in tensors)
    assert any(name.startswith("discriminator.") for name in tensors)
    assert any(name.startswith("optimizer_g.state.") for name in tensors)
    assert {"rng.torch", "rng.noise"} <= tensors.keys()
    assert metadata["step"] == 2 and metadata["config"]["arch"] == "dcgan:dcgan:width=8"
    assert metadata["batches"] == trainer.batches.state_dict()
    assert metadata["components"]["architecture"]["plugin"] == "dcgan"
    assert {"version", "name"} <= metadata["components"]["loss"].keys()
    assert set(metadata["states"]) >= {"optimizer_d", "optimizer_g"}
    assert len(metadata["rng_python"]) == 3


def test_only_the_newest_k_checkpoints_are_kept(tmp_path):
    train(tmp_path / "run", keep_checkpoints=2)
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [
        "step-0000006.safetensors", "step-0000008.safetensors",
    ]


def test_keep_zero_keeps_every_checkpoint(tmp_path):
    train(tmp_path / "run", keep_checkpoints=0)
    assert [checkpoint_step(p) for p in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2, 4, 6, 8]


def test_the_best_checkpoint_by_a_logged_metric_is_kept_apart(tmp_path):
    out = tmp_path / "run"
    train(out, keep_checkpoints=1, best_metric="g_loss", best_mode="min")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best_row = min(rows, key=lambda row: row["g_loss"])
    _, metadata = load_checkpoint(out / "checkpoints" / BEST_NAME)
    assert metadata["step"] == best_row["step"]
    assert metadata["best"] == {"metric": "g_loss", "value": best_row["g_loss"], "step": best_row["step"]}
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-0000008.safetensors"]


def test_sample_refuses_a_pickle_without_unpickling_it(tmp_path, no_unpickling):
    pickled = tmp_path / "generator.pt"
    torch.save({"generator": torch.nn.Linear(2, 2).state_dict()}, pickled)  # written before the patch acts on load
    result = CliRunner().invoke(app, ["sample", str(pickled), "--out", str(tmp_path / "grid.png")])
    assert result.exit_code != 0
    assert "pickle" in result.output and "never unpickles" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "grid.png").exists()


def test_resume_refuses_a_run_whose_checkpoint_is_a_pickle(tmp_path, no_unpickling):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text(RunConfig.from_sources(overrides=SMALL_RUN).to_toml())
    disguised = run / "checkpoints" / "step-0000004.safetensors"
    torch.save({"step": 4}, disguised)
    before = disguised.read_bytes()
    result = CliRunner().invoke(app, ["run", "--resume", str(run), "--quiet"])
    assert result.exit_code != 0 and "pickle" in result.output, result.output
    assert disguised.read_bytes() == before


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"], ids=["0x80", "PK"])
def test_a_checkpoint_whose_header_length_starts_like_a_pickle_still_loads(tmp_path, first_bytes):
    # The 8-byte header length comes first: one checkpoint in 256 has 0x80 as its first byte.
    path = tmp_path / "step-0000001.safetensors"

    def write(padding: int) -> int:
        save_checkpoint(path, {"w": torch.ones(2)}, {"step": 1, "padding": "x" * padding})
        return int.from_bytes(path.read_bytes()[:8], "little")

    # The header grows with the padding, rounded up to 8 bytes: aim at the target, then step onto it.
    target = int.from_bytes(first_bytes, "little") + 256 ** len(first_bytes)
    start = write(0)
    padding = target - start - 8
    while write(padding) < target:
        padding += 1
    assert path.read_bytes()[: len(first_bytes)] == first_bytes
    tensors, metadata = load_checkpoint(path)
    assert metadata["step"] == 1 and torch.equal(tensors["w"], torch.ones(2))


def test_damaged_files_are_one_line_errors(tmp_path):
    path = tmp_path / "step-0000002.safetensors"
    save_checkpoint(path, {"w": torch.ones(1000)}, {"step": 2})
    whole = path.read_bytes()
    cases = {
        "truncated": whole[: len(whole) // 2],
        "tiny": whole[:4],
        "garbage": os.urandom(64).replace(b"\x80", b"\x00").replace(b"PK", b"pk"),
    }
    for name, content in cases.items():
        damaged = tmp_path / f"{name}.safetensors"
        damaged.write_bytes(b"\x10" + content[1:] if name == "garbage" else content)
        with pytest.raises(GankitError) as error:
            load_checkpoint(damaged)
        message = str(error.value)
        assert "\n" not in message and damaged.name in message
        assert "truncated" in message or "not a safetensors" in message or "corrupted" in message
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign))
    with pytest.raises(GankitError, match="not a gankit checkpoint"):
        load_checkpoint(foreign)


def test_a_checkpoint_of_another_architecture_names_the_difference(tmp_path):
    out = tmp_path / "run"
    train(out, steps=2)
    # The checkpoint's own record names another width than its weights have (an edit of config.toml is refused
    # earlier, by resume's config check).
    newest = sorted((out / "checkpoints").glob("step-*.safetensors"))[-1]
    tensors, metadata = load_checkpoint(newest)
    metadata["config"]["arch"] = metadata["config"]["arch"].replace("width=8", "width=16")
    save_checkpoint(newest, tensors, metadata)
    result = CliRunner().invoke(app, ["sample", str(newest), "-n", "4", "--out", str(tmp_path / "s.png")])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not match the architecture" in lines[0] and "shape" in lines[0], result.output


def test_newest_loadable_skips_damage_but_never_a_pickle(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(folder / "step-0000001.safetensors", {"w": torch.ones(1)}, {"step": 1})
    (folder / "step-0000002.safetensors").write_bytes(b"\x00" * 3)
    warnings = []
    path, _, metadata = newest_loadable_checkpoint(tmp_path / "run", warnings.append)
    assert metadata["step"] == 1 and len(warnings) == 1
    torch.save({"x": 1}, folder / "step-0000003.safetensors")
    with pytest.raises(GankitError, match="pickle"):
        newest_loadable_checkpoint(tmp_path / "run", warnings.append)


def test_leftovers_of_a_killed_write_are_ignored_and_cleaned_on_resume(tmp_path):
    out = tmp_path / "run"
    train(out, steps=4)
    leftover = out / "checkpoints" / ".step-0000006.safetensors.abc123.tmp"
    leftover.write_bytes(b"partial")
    assert [checkpoint_step(p) for p in list_checkpoints(out / "checkpoints")] == [2, 4]
    result = CliRunner().invoke(app, ["run", "--resume", str(out), "--steps", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not leftover.exists()
