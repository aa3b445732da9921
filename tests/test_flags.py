"""Settings are declared once, in RunConfig: the flags of `gankit run` and `gankit bench`, their --help and the
options tables of docs/cli.md are derived from its fields, and these tests fail when any of them drifts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import gankit.cli
import gankit.runs
from gankit.cli import app, cli_reference
from gankit.config import RunConfig, settings
from gankit.errors import GankitError
from gankit.flags import SECTIONS

CLI_DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
RUN_ONLY = {"resume", "config", "overwrite", "quiet"}
BENCH_ONLY = {"steps", "warmup", "channels", "as_json"}


def command(name: str):
    return typer.main.get_command(app).commands[name]


def test_docs_cli_md_is_generated_from_runconfig():
    text = CLI_DOCS.read_text(encoding="utf-8")
    assert cli_reference(text) == text, "docs/cli.md drifted from RunConfig: run python scripts/cli_docs.py"


def test_every_setting_has_a_run_flag_and_every_run_flag_a_setting():
    options = {param.name for param in command("run").params}
    assert options - RUN_ONLY == set(RunConfig.keys())


def test_bench_takes_exactly_the_settings_marked_for_it():
    marked = {field.name for field in settings() if field.metadata["setting"].bench}
    options = {param.name for param in command("bench").params}
    assert options == marked | BENCH_ONLY
    # The settings bench has always had stay, under the same flags.
    flags = {opt for param in command("bench").params for opt in param.opts + param.secondary_opts}
    assert {"--arch", "--loss", "--reg", "--image-size", "--batch-size", "--device", "--data", "--data-root",
            "--precision", "--compile", "--no-compile", "--channels-last", "--no-channels-last", "--threads"} <= flags


@pytest.mark.parametrize("field", settings(), ids=lambda field: field.name)
def test_every_setting_says_what_it_is(field):
    shown = field.metadata["setting"]
    assert shown.help.strip() and shown.section in SECTIONS
    if field.default is None:  # "None" means nothing to a user: the docs say what unset means
        assert shown.default_text


def run_settings(monkeypatch, *args: str) -> RunConfig:
    """The RunConfig `gankit run ARGS` trains with (stopped before anything is built)."""
    seen = {}

    def capture(config, **_):
        seen["config"] = config
        raise GankitError("stopped by the test")

    monkeypatch.setattr(gankit.runs, "new_run", capture)
    result = CliRunner().invoke(app, ["run", *args])
    assert "stopped by the test" in result.output, result.output
    return seen["config"]


def test_flags_keep_their_names_and_behaviour(monkeypatch):
    config = run_settings(
        monkeypatch, "--no-cache", "--compile", "--reg", "gp", "--reg", "clip", "--logger", "csv", "--logger",
        "tensorboard", "--threads", "1", "--betas", "0.0,0.9", "--batch-size", "8", "--lr-d", "0.001",
    )
    assert config.data_cache is False and config.compile is True and config.threads == 1
    assert config.reg == ["gp", "clip"] and config.logger == ["csv", "tensorboard"]
    assert config.betas == [0.0, 0.9] and config.batch_size == 8 and config.lr_d == 0.001
    assert {"data_cache", "compile", "reg", "logger", "threads", "betas", "batch_size", "lr_d"} == config.user_set
    config = run_settings(monkeypatch, "--no-compile", "--no-channels-last")
    assert config.compile is False and config.channels_last is False and config.user_set == {"compile", "channels_last"}
    # Unset flags are unset: defaults, and nothing counts as the user's (recommendations may still apply).
    config = run_settings(monkeypatch)
    assert config.user_set == set() and config.as_dict() == RunConfig().as_dict()


def test_settings_once_only_in_the_config_file_are_flags_too(monkeypatch):
    config = run_settings(monkeypatch, "--best-metric", "fid", "--best-mode", "max", "--max-rollbacks", "1",
                          "--rollback-lr-factor", "0.25", "--collapse-d-loss", "0.1", "--collapse-steps", "0")
    assert (config.best_metric, config.best_mode, config.max_rollbacks) == ("fid", "max", 1)
    assert (config.rollback_lr_factor, config.collapse_d_loss, config.collapse_steps) == (0.25, 0.1, 0)


def help_at_80_columns(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    return result.output


def test_run_help_at_80_columns_shows_full_names_and_defaults():
    text = help_at_80_columns("run")
    for param in command("run").params:
        for option in param.opts + param.secondary_opts:
            assert re.search(rf"(^|\s){re.escape(option)}(\s|$)", text, flags=re.MULTILINE), f"{option} not shown whole"
    words = " ".join(text.split())  # defaults may wrap across lines
    assert "--batch-size N Real examples per discriminator step (and fakes per step). [default: 64]" in words
    assert "--d-steps-boost-every N" in words and "[default: unset]" in words
    assert "--compile / --no-compile" in words and "[default: off]" in words
    assert "--arch SPEC" in words and "[default: the data source's recommendation, else dcgan:dcgan]" in words
    assert "<bool>" not in text and "…" not in text and "..." not in text.split("Options:")[0]


def test_top_level_help_shows_no_bool_metavar():
    text = help_at_80_columns()
    assert "<bool>" not in text
    assert re.search(r"^\s+--version\s+Print the version", text, flags=re.MULTILINE)


def test_bench_help_at_80_columns():
    text = help_at_80_columns("bench")
    assert "<bool>" not in text and "--channels-last / --no-channels-last" in text
    assert "[default: 64]" in " ".join(text.split())
