"""Recommendations merge predictably with what the user names: options of the same component merge (the user's
win key by key), a recommendation of another component is dropped, and a resumed run never merges."""
from __future__ import annotations

import pytest

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.registry import default_registry

TINY = {"data": "digits:count=256", "batch_size": 16, "z_dim": 16, "device": "cpu"}


def resolved(**flags) -> RunConfig:
    """The config a run with these flags records (built, not trained)."""
    return Trainer(RunConfig.from_sources(overrides={**TINY, **flags})).config


@pytest.mark.parametrize("chosen, merged", [
    ("dcgan:norm=layer", "dcgan:width=32,norm=layer"),  # the recommended width stays, the user's norm is added
    ("dcgan:width=8", "dcgan:width=8"),  # the user's option wins
    ("dcgan:dcgan", "dcgan:dcgan:width=32"),  # named with its plugin: the same component
    ("wgan", "wgan"),  # another component: the recommendation is dropped
    ("no-such-arch", "no-such-arch"),  # unknown: left for the build to report
])
def test_merge_options(chosen, merged):
    registry = default_registry()
    assert registry.merge_options("architecture", recommended="dcgan:dcgan:width=32", chosen=chosen) == merged


def test_naming_the_recommended_component_keeps_its_options():
    assert resolved().arch == "dcgan:dcgan:width=32"
    assert resolved(arch="dcgan:norm=layer").arch == "dcgan:dcgan:width=32,norm=layer"  # used to lose width 32
    assert resolved(arch="dcgan:width=8,norm=layer").arch == "dcgan:dcgan:width=8,norm=layer"


def test_the_defaults_spelled_out_are_the_defaults():
    # README: `gankit run --arch dcgan --loss bce` is the defaults, spelled out.
    assert resolved(arch="dcgan", loss="bce").as_dict() == resolved().as_dict()


def test_a_resolved_config_never_merges():
    config = RunConfig()
    config.update({"arch": "dcgan:dcgan"}, source="run")
    config.resolved = True  # as resume marks the config it reads back from a checkpoint
    assert config.recommend({"arch": "dcgan:dcgan:width=32"}, source="data", components=default_registry()) == []
    assert config.arch == "dcgan:dcgan"
    config.resolved = False
    assert config.recommend({"arch": "dcgan:dcgan:width=32"}, source="data", components=default_registry()) == ["arch"]
    assert config.arch == "dcgan:dcgan:width=32"


def test_a_recipe_outranks_its_own_loss_but_a_chosen_loss_brings_its_own_optimizer():
    # The grid's recipe trains bce with Adam 3e-3; bce's own 2e-4 gives way, named or not.
    for flags in [{}, {"loss": "bce"}]:
        config = Trainer(RunConfig.from_sources(overrides={"data": "grid", "device": "cpu", **flags})).config
        assert (config.optimizer, config.lr, config.d_steps) == ("adam", 3e-3, 1)
    # WGAN chosen on the grid: its RMSprop at 5e-5 with 5 critic steps, not the recipe's Adam 3e-3 with 1.
    config = Trainer(RunConfig.from_sources(
        overrides={"data": "grid", "loss": "wasserstein", "reg": ["clip"], "device": "cpu"})).config
    assert (config.optimizer, config.lr, config.d_steps, config.generator_noise) == ("rmsprop", 5e-5, 5, "fresh")
    assert config.ema == 0.999 and config.z_dim == 2  # the recipe's settings the loss does not set stay
    # A regularizer chosen instead of the recipe's brings its settings too (gp: WGAN-GP's Adam 1e-4, 5 steps).
    config = Trainer(RunConfig.from_sources(overrides={"data": "ring", "reg": ["gp"], "device": "cpu"})).config
    assert (config.lr, config.betas, config.d_steps) == (1e-4, [0.0, 0.9], 5)
    # The user's own settings win over everything.
    config = Trainer(RunConfig.from_sources(
        overrides={"data": "grid", "loss": "wasserstein", "reg": ["clip"], "lr": 1e-3, "device": "cpu"})).config
    assert config.lr == 1e-3


def test_the_digits_recipe_sets_its_rate_for_bce_only():
    config = Trainer(RunConfig.from_sources(overrides={"data": "digits:count=256", "device": "cpu"})).config
    assert (config.lr, config.lr_decay, config.z_dim, config.betas) == (3e-3, 0.5, 32, [0.5, 0.999])
    config = resolved(loss="wasserstein", reg=["clip"])
    assert (config.optimizer, config.lr, config.d_steps) == ("rmsprop", 5e-5, 5)
    # The rate's schedule goes with the rate: WGAN's constant 5e-5, not the recipe's decay of its 3e-3.
    assert config.lr_decay == 0.0
    assert resolved(loss="wasserstein", reg=["clip"], lr_decay=0.25).lr_decay == 0.25  # the user's own wins
    hinge = resolved(loss="hinge")  # hinge's two time-scale rates (lr_d, lr_g override lr)
    assert (hinge.lr_d, hinge.lr_g, hinge.betas, hinge.lr_decay) == (4e-4, 1e-4, [0.0, 0.9], 0.0)
    assert resolved(reg=["gp"], arch="dcgan:norm=layer").lr_decay == 0.0  # a regularizer that sets the rate sets its schedule too
