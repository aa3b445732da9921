"""RunConfig: defaults, TOML files, flags overriding files, validation with one-line messages."""
from __future__ import annotations

import tomllib

import pytest

from gankit.config import RunConfig
from gankit.errors import GankitError


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('arch = "dcgan"\nsteps = 50\nbatch-size = 8\nreg = ["a", "b"]\n')
    config = RunConfig.from_sources(path, {"steps": 7, "lr": None})
    assert config.steps == 7  # the flag wins
    assert config.batch_size == 8  # from the file, '-' accepted for '_'
    assert config.reg == ["a", "b"]
    assert {"steps", "batch_size", "reg", "arch"} <= config.user_set
    assert "lr" not in config.user_set


def test_a_run_table_is_accepted(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[run]\nsteps = 3\n")
    assert RunConfig.from_sources(path).steps == 3


def test_recommendations_never_override_user_settings():
    config = RunConfig.from_sources(overrides={"lr": 1e-3})
    applied = config.recommend({"lr": 5e-5, "optimizer": "rmsprop"}, source="test")
    assert applied == ["optimizer"]
    assert config.lr == 1e-3 and config.optimizer == "rmsprop"


def test_written_toml_reads_back_to_the_same_config(tmp_path):
    config = RunConfig.from_sources(overrides={"reg": ["clip:value=0.02"], "data_root": 'a "quoted" path', "lr": 1e-4})
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    again = RunConfig.from_sources(path)
    assert again.as_dict() == config.as_dict()
    assert tomllib.loads(path.read_text())["reg"] == ["clip:value=0.02"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"steps": 0}, "steps must be positive"),
        ({"batch_size": -2}, "batch-size must be positive"),
        ({"image_size": 0}, "image-size must be positive"),
        ({"z_dim": 0}, "z-dim must be positive"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"device": "gpu"}, "device must be"),
        ({"optimizer": "adamw"}, "optimizer must be one of"),
        ({"betas": "0.5"}, "betas must be two numbers"),
        ({"steps": "many"}, "steps must be int"),
    ],
)
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(GankitError, match=message) as info:
        RunConfig.from_sources(overrides=overrides)
    assert "\n" not in str(info.value)


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("stepz = 3\n")
    with pytest.raises(GankitError, match=r"unknown config key 'stepz'.*did you mean 'steps'"):
        RunConfig.from_sources(path)


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), ("steps = = 3", "not valid TOML"), (b"\xff\xfe", "not UTF-8|not valid TOML")],
)
def test_unreadable_config_files(tmp_path, content, message):
    path = tmp_path / "run.toml"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(GankitError, match=message):
        RunConfig.from_sources(path)


def test_wrong_type_in_file_names_the_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('batch_size = "large"\n')
    with pytest.raises(GankitError, match="batch-size must be int"):
        RunConfig.from_sources(path)
