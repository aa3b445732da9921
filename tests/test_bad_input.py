"""A corpus of bad input: CLI values, config files, data folders, plugins and checkpoints.

For each: a non-zero exit, one ``Error:`` line that names the problem, no traceback, and the files that
were there before (data, runs, checkpoints) left exactly as they were.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from typer.testing import CliRunner

from gankit.checkpoint import save_checkpoint
from gankit.cli import app

TINY = [
    "--arch", "dcgan:width=8", "--data", "digits:count=256", "--batch-size", "16", "--steps", "2",
    "--z-dim", "16", "--checkpoint-every", "2", "--sample-every", "2", "--device", "cpu", "--quiet",
]


@dataclass
class BadInput:
    """One bad input: ``prepare(work)`` makes the files it needs and returns the command line."""

    name: str
    prepare: Callable[[Path], list[str]]
    fragments: tuple[str, ...]
    plugins: dict[str, str] = field(default_factory=dict)  # entry-point name -> module source


def run(*args: str) -> Callable[[Path], list[str]]:
    return lambda work: ["run", *TINY, "--out", str(work / "run"), *args]


def with_file(name: str, content: bytes | str, *args: str, command: str = "run") -> Callable[[Path], list[str]]:
    def prepare(work: Path) -> list[str]:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        rendered = [a.replace("{file}", str(path)).replace("{work}", str(work)) for a in args]
        if command == "run":
            return ["run", *TINY, "--out", str(work / "run"), *rendered]
        return [command, *rendered]

    return prepare


def finished_run(*args: str) -> Callable[[Path], list[str]]:
    """A real finished run in ``work/done``; the command gets ``{run}`` replaced by its path."""

    def prepare(work: Path) -> list[str]:
        done = work / "done"
        result = CliRunner().invoke(app, ["run", *TINY, "--out", str(done)])
        assert result.exit_code == 0, result.output
        return [a.replace("{run}", str(done)) for a in args]

    return prepare


def pickled_checkpoint(name: str, *args: str) -> Callable[[Path], list[str]]:
    def prepare(work: Path) -> list[str]:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"generator": {"weight": torch.zeros(2, 2)}}, path)
        (work / "pickled-run" / "config.toml").parent.mkdir(exist_ok=True)
        (work / "pickled-run" / "config.toml").write_text('arch = "dcgan:width=8"\ndata = "digits:count=256"\n')
        return [a.replace("{file}", str(path)).replace("{work}", str(work)) for a in args]

    return prepare


def damaged_checkpoint(keep_bytes: int | None, *args: str) -> Callable[[Path], list[str]]:
    def prepare(work: Path) -> list[str]:
        path = work / "ckpt" / "step-0000002.safetensors"
        save_checkpoint(path, {"generator.weight": torch.ones(256)}, {"step": 2})
        if keep_bytes is not None:
            path.write_bytes(path.read_bytes()[:keep_bytes])
        return [a.replace("{file}", str(path)) for a in args]

    return prepare


def foreign_checkpoint(work: Path) -> list[str]:
    path = work / "ckpt" / "step-0000002.safetensors"
    save_checkpoint(path, {"generator.weight": torch.ones(4)}, {"step": 2, "config": {"arch": "gone"}, "shape": [1, 32, 32], "z_dim": 16})
    return ["sample", str(path), "--out", str(work / "grid.png")]


ARCH_RETURNS_ONE_MODULE = """
import gankit, torch
def factory(*, shape, z_dim):
    return torch.nn.Linear(z_dim, 1)
@gankit.hookimpl
def gankit_register_architectures(register):
    register("lonely", factory)
"""
LOSS_RETURNS_A_STRING = """
import gankit
@gankit.hookimpl
def gankit_register_losses(register):
    register("stringy", lambda: "not a loss")
"""
DATA_FACTORY_RAISES = """
import gankit
def factory(*, root=None, image_size=None, seed=0):
    raise ValueError("the data server is down")
@gankit.hookimpl
def gankit_register_data_sources(register):
    register("remote", factory)
"""
IMPORT_FAILS = """
import gankit
import gankit_dependency_that_is_not_installed
"""
HOOK_RAISES = """
import gankit
@gankit.hookimpl
def gankit_register_architectures(register):
    raise RuntimeError("hook exploded")
"""
DUPLICATE_NAME = """
import gankit
@gankit.hookimpl
def gankit_register_architectures(register):
    register("dcgan", lambda *, shape, z_dim: None)
"""
MISSPELT_HOOK = """
import gankit
@gankit.hookimpl
def gankit_register_architecture(register):
    register("typo", lambda *, shape, z_dim: None)
"""
DATA_WRONG_SHAPE = """
import gankit, torch
from gankit.components import DataSource
class Shapeless(DataSource):
    def __init__(self, *, root=None, image_size=None, seed=0):
        pass
    def __len__(self):
        return 64
    def tensor(self):
        return torch.zeros(64, 2)
@gankit.hookimpl
def gankit_register_data_sources(register):
    register("shapeless", Shapeless)
"""

CORPUS = [
    # -- CLI values --------------------------------------------------------------------------------
    BadInput("zero steps", run("--steps", "0"), ("steps must be positive",)),
    BadInput("batch size not a number", run("--batch-size", "abc"), ("--batch-size", "integer")),
    BadInput("negative learning rate", run("--lr", "-1"), ("lr must be positive",)),
    BadInput("betas not numbers", run("--betas", "0.5,x"), ("betas must be numbers",)),
    BadInput("unknown device", run("--device", "tpu"), ("device must be", "tpu")),
    BadInput("misspelt architecture", run("--arch", "dcgna"), ("unknown architecture 'dcgna'", "did you mean 'dcgan'")),
    BadInput("option the loss lacks", run("--loss", "bce:margin=1"), ("margin",)),
    BadInput("option of the wrong type", run("--arch", "dcgan:width=wide"), ("width", "wide")),
    BadInput("option given twice", run("--arch", "dcgan:width=8,width=9"), ("width", "given twice")),
    BadInput("options split over two parts", run("--arch", "dcgan:norm=layer:width=8"), ("options go in one last part",)),
    BadInput("unknown divergence action", run("--on-divergence", "explode"), ("on-divergence must be one of", "explode")),
    BadInput("negative checkpoints kept", run("--keep-checkpoints", "-1"), ("keep-checkpoints must be",)),
    BadInput("image size the architecture cannot make", run("--image-size", "33"), ("dcgan supports", "33")),
    BadInput("batch larger than the data", run("--batch-size", "1000"), ("fewer than the batch size 1000",)),
    BadInput("--out is a file", with_file("notes.txt", "my notes\n", "--out", "{file}"), ("is a file",)),
    BadInput(
        "--out holds a finished run", finished_run("run", *TINY, "--out", "{run}"),
        ("already holds a run", "--resume", "--overwrite"),
    ),
    BadInput("--resume with a changed flag", finished_run("run", "--resume", "{run}", "--lr", "0.1"), ("--lr cannot be changed",)),
    BadInput("--resume a finished run", finished_run("run", "--resume", "{run}"), ("already finished at step 2", "--steps")),
    BadInput("--resume with --overwrite", finished_run("run", "--resume", "{run}", "--overwrite"), ("--overwrite cannot be given",)),
    BadInput("--resume a missing folder", lambda work: ["run", "--resume", str(work / "nope")], ("no such folder",)),
    BadInput("--resume a folder that holds no run", with_file("empty/readme.txt", "", "--resume", "{work}/empty", command="run"), ("not a run directory",)),
    # -- config files ------------------------------------------------------------------------------
    BadInput("config file missing", lambda work: ["run", "--config", str(work / "absent.toml")], ("config file not found",)),
    BadInput("config not TOML", with_file("bad.toml", "steps = = 3\n", "--config", "{file}"), ("not valid TOML",)),
    BadInput("config key misspelt", with_file("typo.toml", "stepz = 3\n", "--config", "{file}"), ("unknown config key 'stepz'", "did you mean 'steps'")),
    BadInput("config value of the wrong type", with_file("type.toml", 'steps = "many"\n', "--config", "{file}"), ("steps must be int", "many")),
    BadInput("config is a folder", lambda work: ["run", "--config", str(work)], ("config file is a directory",)),
    BadInput("config not UTF-8", with_file("latin.toml", b'arch = "caf\xe9"\n', "--config", "{file}"), ("not UTF-8",)),
    BadInput("divergence threshold out of range", with_file("guard.toml", "rollback_lr_factor = 2.0\n", "--config", "{file}"), ("rollback-lr-factor must be in (0, 1]",)),
    # -- data folders ------------------------------------------------------------------------------
    BadInput("data folder missing", run("--data", "anime", "--data-root", "/nonexistent/faces"), ("not found", "--data-root")),
    BadInput("data folder without images", with_file("faces/readme.txt", "no faces here", "--data", "anime", "--data-root", "{work}/faces"), ("holds no",)),
    BadInput("data root is a file", with_file("faces.zip", b"PK\x03\x04", "--data", "anime", "--data-root", "{file}"), ("is a file",)),
    # -- plugins -----------------------------------------------------------------------------------
    BadInput("plugin that fails to import", run("--arch", "fancy"), ("unknown architecture 'fancy'", "'broken'", "ModuleNotFoundError"), {"broken": IMPORT_FAILS}),
    BadInput("plugin hook that raises", run("--arch", "exploded"), ("'exploding'", "hook exploded"), {"exploding": HOOK_RAISES}),
    BadInput("two plugins register one name", run("--arch", "dcgan"), ("provided by several plugins", "dcgan:dcgan", "copycat:dcgan"), {"copycat": DUPLICATE_NAME}),
    BadInput("misspelt hook name", run("--arch", "typo"), ("unknown architecture 'typo'", "unknown hook 'gankit_register_architecture'"), {"misspelt": MISSPELT_HOOK}),
    BadInput("architecture factory returns one module", run("--arch", "lonely"), ("must return (generator, discriminator)", "Linear"), {"lonely": ARCH_RETURNS_ONE_MODULE}),
    BadInput("loss factory returns a string", run("--loss", "stringy"), ("did not build a gankit.components.Loss",), {"stringy": LOSS_RETURNS_A_STRING}),
    BadInput("data factory raises", run("--data", "remote"), ("failed to build", "the data server is down"), {"remote": DATA_FACTORY_RAISES}),
    BadInput("data source without a shape", run("--data", "shapeless"), ("does not declare its shape",), {"shapeless": DATA_WRONG_SHAPE}),
    # -- checkpoints -------------------------------------------------------------------------------
    BadInput("sample a pickle", pickled_checkpoint("model.pt", "sample", "{file}", "--out", "{work}/grid.png"), ("pickle", "never unpickles")),
    BadInput(
        "resume onto a pickle checkpoint",
        pickled_checkpoint("pickled-run/checkpoints/step-0000004.safetensors", "run", "--resume", "{work}/pickled-run", "--steps", "9"),
        ("pickle", "never unpickles"),
    ),
    BadInput("sample a truncated checkpoint", damaged_checkpoint(300, "sample", "{file}"), ("truncated",)),
    BadInput("sample a checkpoint cut in its header", damaged_checkpoint(5, "sample", "{file}"), ("truncated",)),
    BadInput("sample a file of garbage", with_file("noise.safetensors", b"\x05" * 64, "{file}", command="sample"), ("not a safetensors checkpoint",)),
    BadInput("sample a folder without checkpoints", with_file("weights/model.pth", b"PK", "{work}/weights", command="sample"), ("no checkpoint in", "model.pth", "never loads")),
    BadInput("sample a checkpoint of an unknown architecture", foreign_checkpoint, ("unknown architecture 'gone'",)),
    BadInput("sample zero images", finished_run("sample", "{run}", "-n", "0"), ("must be positive",)),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }




@pytest.fixture
def plugin_environment(install_entry_points):
    """Install test plugins as entry points (modules on sys.path), with a fresh plugin set and registry."""
    return install_entry_points


def test_the_corpus_is_large_and_covers_every_area():
    assert len(CORPUS) >= 25
    assert len({case.name for case in CORPUS}) == len(CORPUS)
    assert sum(bool(case.plugins) for case in CORPUS) >= 4


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_input_fails_with_one_line_naming_the_problem(case, tmp_path, plugin_environment, one_thread):
    plugin_environment(case.plugins)
    work = tmp_path / "work"
    work.mkdir()
    args = case.prepare(work)
    before = snapshot(work)
    result = CliRunner().invoke(app, args)
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an escaped exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in case.fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(work) == before, "files were changed"
    assert not (work / "run").exists()
