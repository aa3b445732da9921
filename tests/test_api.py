"""The public Python API (docs/python-api.md): import gankit without torch, the documented example runs and
prints what the doc says, and gankit.train treats run folders as gankit run does."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gankit
from gankit.errors import GankitError

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(arch="dcgan:width=8", data="digits:count=256", batch_size=16, steps=2, z_dim=16,
            sample_every=2, checkpoint_every=2, device="cpu")


def test_import_gankit_and_its_api_names_do_not_import_torch():
    code = (
        "import sys, gankit\n"
        "names = [gankit.RunConfig, gankit.train, gankit.load_generator, gankit.sample, gankit.list_plugins]\n"
        "gankit.RunConfig(steps=3)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr


def test_unknown_attributes_are_still_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        gankit.trian  # noqa: B018
    assert {"RunConfig", "train", "sample"} <= set(dir(gankit))


def example_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), flags=re.DOTALL)


def test_the_example_in_the_docs_runs_and_prints_what_it_shows(tmp_path, monkeypatch, capsys, one_thread):
    (code,) = example_blocks()
    # Each print(...) line of the example shows its output as the comment at its end.
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines() if line.startswith("print(")]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/python-api.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == expected
    assert (tmp_path / "runs" / "tiny" / "config.toml").is_file()


def test_run_config_keywords_are_checked_and_win_over_recommendations():
    config = gankit.RunConfig(reg="gp", batch_size="32", arch="dcgan:width=8")
    assert config.reg == ["gp"] and config.batch_size == 32
    assert {"reg", "batch_size", "arch"} <= config.user_set
    with pytest.raises(GankitError, match="unknown config key 'batchsize'.*did you mean 'batch-size'"):
        gankit.RunConfig(batchsize=3)
    with pytest.raises(GankitError, match="steps must be positive"):
        gankit.RunConfig(steps=0)


def test_train_refuses_an_existing_run_and_leaves_the_config_alone(tmp_path, one_thread):
    config = gankit.RunConfig(**TINY)
    run = gankit.train(config, out=tmp_path / "run")
    assert run == tmp_path / "run" and config.out is None and config.arch == "dcgan:width=8"
    before = (run / "config.toml").read_bytes()
    with pytest.raises(GankitError, match="already holds a run"):
        gankit.train(config, out=run)
    assert (run / "config.toml").read_bytes() == before
    # A checkpoint file works as well as the run folder; the same seed gives the same samples.
    checkpoint = sorted((run / "checkpoints").glob("*.safetensors"))[-1]
    generator, metadata = gankit.load_generator(checkpoint)
    assert metadata["step"] == 2 and not generator.training
    first, again = gankit.sample(run, 3, seed=5), gankit.sample(checkpoint, 3, seed=5)
    assert first.shape == (3, 1, 32, 32) and bool((first == again).all())
    assert not bool((gankit.sample(run, 3, seed=6) == first).all())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gankit.train("runs/x"), "train() needs a gankit.RunConfig (or a dict of settings), got str"),
        (lambda: gankit.train({"stepz": 2}), "unknown config key 'stepz'"),
        (lambda: gankit.sample("runs/x", 2.5), "the number of samples must be a whole number, got 2.5"),
        (lambda: gankit.sample("runs/x", 0), "the number of samples must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, message):
    with pytest.raises(GankitError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_default_run_folder_keeps_the_bare_names_although_the_defaults_name_their_plugin():
    from gankit.runs import default_out

    assert re.fullmatch(r"runs/\d{8}-\d{6}-dcgan-bce", default_out(gankit.RunConfig()).as_posix())
    assert default_out(gankit.RunConfig(arch="mine:resnet:width=32", loss="hinge")).name.endswith("-resnet-hinge")


def test_train_takes_the_run_folder_lock_like_the_cli(tmp_path, one_thread):
    # The same process holding the folder's lock through another open file counts as another holder (flock).
    import os

    from gankit.runfolder import RunFolderLock

    out = tmp_path / "run"
    holder = RunFolderLock(out).acquire()
    try:
        with pytest.raises(GankitError, match=f"in use by another gankit process.*{os.getpid()}"):
            gankit.train(gankit.RunConfig(**TINY), out=out)
    finally:
        holder.release()
    assert not (out / "config.toml").exists()  # refused before anything of the run was written
    assert gankit.train(gankit.RunConfig(**TINY), out=out) == out
