"""WGAN as the paper's reference code runs it: the article's networks, the critic schedule, fresh noise for the
generator, and `gankit run --loss wasserstein --reg clip` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from gankit.builtins.wgan import wgan
from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.registry import default_registry

ANIME = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"


def trainer(settings: dict, **changes) -> Trainer:
    return Trainer(RunConfig.from_sources(overrides={**settings, **changes}))


def layer_shapes(sequential: nn.Sequential, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    shapes = []
    for layer in sequential:
        x = layer(x)
        shapes.append((type(layer).__name__, tuple(x.shape[1:])))
    return shapes


# -- the article's networks ------------------------------------------------------------------------------


def test_96_pixel_networks_are_the_articles_layer_for_layer():
    generator, critic = wgan(shape=(3, 96, 96), z_dim=100)
    generator.eval(), critic.eval()
    with torch.no_grad():
        g = layer_shapes(generator.main, torch.randn(1, 100, 1, 1))
        d = layer_shapes(critic.main, torch.randn(1, 3, 96, 96))
    assert g == [
        ("ConvTranspose2d", (1024, 3, 3)),
        *[(name, (c, s, s)) for c, s in ((512, 6), (256, 12), (128, 24), (64, 48))
          for name in ("ConvTranspose2d", "BatchNorm2d", "ReLU")],
        ("ConvTranspose2d", (3, 96, 96)),
        ("Tanh", (3, 96, 96)),
    ]
    assert d == [
        ("Conv2d", (64, 48, 48)),
        ("LeakyReLU", (64, 48, 48)),
        *[(name, (c, s, s)) for c, s in ((128, 24), (256, 12), (512, 6), (1024, 3))
          for name in ("Conv2d", "BatchNorm2d", "LeakyReLU")],
        ("Conv2d", (1, 1, 1)),
    ]
    first = generator.main[0]
    assert (first.kernel_size, first.in_channels) == ((3, 3), 100)
    assert all(layer.kernel_size == (4, 4) and layer.stride == (2, 2) and layer.padding == (1, 1)
               for layer in critic.main[:-1] if isinstance(layer, nn.Conv2d))
    assert critic.main[-1].kernel_size == (3, 3)
    assert all(layer.negative_slope == 0.2 for layer in critic.main if isinstance(layer, nn.LeakyReLU))
    assert all(layer.bias is None for layer in [*generator.modules(), *critic.modules()]
               if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)))


def test_critic_returns_unbounded_raw_scores_without_any_sigmoid():
    generator, critic = wgan(shape=(3, 32, 32), z_dim=8, width=4)
    assert not any(isinstance(layer, (nn.Sigmoid, nn.Tanh)) for layer in critic.modules())
    with torch.no_grad():
        scores = critic(torch.randn(6, 3, 32, 32) * 50)
    assert scores.shape == (6,)
    assert scores.min() < 0 or scores.max() > 1


@pytest.mark.parametrize("size", [16, 32, 48, 64])
def test_other_sizes_add_or_remove_stages(size):
    generator, critic = wgan(shape=(1, size, size), z_dim=8, width=2)
    with torch.no_grad():
        images = generator(torch.randn(2, 8))
        assert images.shape == (2, 1, size, size)
        assert critic(images).shape == (2,)


def test_unsupported_shapes_and_options_are_clear_errors():
    with pytest.raises(GankitError, match=r"wgan supports square images of 12, 16, 24, 32, .* got 40x40"):
        wgan(shape=(3, 40, 40), z_dim=8)
    with pytest.raises(GankitError, match="square images"):
        wgan(shape=(2,), z_dim=8)
    with pytest.raises(GankitError, match="norm must be one of batch, layer, instance, none"):
        wgan(shape=(3, 32, 32), z_dim=8, norm="group")


def test_norm_option_replaces_batch_norm_in_the_critic_only():
    generator, critic = wgan(shape=(3, 32, 32), z_dim=8, width=2, norm="layer")
    assert not any(isinstance(layer, nn.BatchNorm2d) for layer in critic.modules())
    assert any(isinstance(layer, nn.GroupNorm) for layer in critic.modules())
    assert any(isinstance(layer, nn.BatchNorm2d) for layer in generator.modules())


# -- the critic schedule and the generator's noise --------------------------------------------------------


def test_wasserstein_recommends_the_reference_schedule(tiny_run):
    run = trainer(tiny_run, loss="wasserstein", reg=["clip"])
    assert (run.config.optimizer, run.config.lr, run.config.d_steps) == ("rmsprop", 5e-5, 5)
    assert isinstance(run.optimizer_d, torch.optim.RMSprop) and run.optimizer_g.param_groups[0]["lr"] == 5e-5
    schedule = {step: run.d_steps_at(step) for step in (0, 1, 24, 25, 26, 499, 500, 501, 1000, 1001)}
    assert schedule == {0: 100, 1: 100, 24: 100, 25: 5, 26: 5, 499: 5, 500: 100, 501: 5, 1000: 100, 1001: 5}


@pytest.mark.parametrize(
    "changes",
    [{"loss": "wasserstein:schedule=false"}, {"d_steps_warmup": 0, "d_steps_boost_every": 0}],
    ids=["loss-option", "flags"],
)
def test_the_schedule_can_be_switched_off(tiny_run, changes):
    run = trainer(tiny_run, **{"loss": "wasserstein", "reg": ["clip"], **changes})
    assert {run.d_steps_at(step) for step in (0, 24, 500, 1000)} == {5}


def test_the_engine_performs_the_scheduled_number_of_critic_updates_each_on_a_fresh_real_batch(tiny_run):
    run = trainer(tiny_run, loss="wasserstein", reg=["clip"], d_steps=2, d_steps_boost=4, d_steps_warmup=2,
                  d_steps_boost_every=3)
    updates, batches = [], []
    optimizer_step, next_batch = run.optimizer_d.step, run.batches.next
    run.optimizer_d.step = lambda *a, **k: (updates.append(1), optimizer_step(*a, **k))[1]
    run.batches.next = lambda: (lambda batch: (batches.append(batch.clone()), batch)[1])(next_batch())
    per_step = []
    for step in range(7):
        before = len(updates)
        run.train_step(step)
        per_step.append(len(updates) - before)
    # Steps 0 and 1: warm-up; 3 and 6: every 3rd; the rest: d_steps.
    assert per_step == [4, 4, 2, 4, 2, 2, 4] == [run.d_steps_at(step) for step in range(7)]
    assert len(batches) == sum(per_step)
    assert all(not torch.equal(a, b) for a, b in zip(batches, batches[1:]))


def test_wasserstein_draws_fresh_noise_for_the_generator_update(tiny_run):
    run = trainer(tiny_run, loss="wasserstein:schedule=false", reg=["clip"], d_steps=2)
    assert run.config.generator_noise == "fresh"
    noise = []
    run.generator.register_forward_hook(lambda module, inputs, output: noise.append(inputs[0].clone()))
    run.train_step(0)
    # Two critic updates, then the generator's own batch of new noise, as the reference code draws it.
    assert len(noise) == 3
    assert noise[2].shape == noise[1].shape
    assert not torch.equal(noise[2], noise[1]) and not torch.equal(noise[2], noise[0])


def test_generator_noise_setting_is_checked(tiny_run):
    with pytest.raises(GankitError, match="generator-noise must be one of reuse, fresh"):
        RunConfig.from_sources(overrides={**tiny_run, "generator_noise": "new"})


# -- end to end ------------------------------------------------------------------------------------------

TINY_FLAGS = [
    "--data", "digits:count=256", "--batch-size", "16", "--z-dim", "16", "--device", "cpu", "--quiet",
    "--sample-every", "2", "--checkpoint-every", "2", "--log-every", "1",
]


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("arch", ["wgan:width=4", None], ids=["wgan", "default-arch"])
def test_gankit_run_wasserstein_clip_writes_a_checkpoint_with_every_critic_weight_clipped(tmp_path, arch):
    out = tmp_path / "run"
    flags = ["--arch", arch] if arch else []  # None: no --arch, the default architecture
    run_cli("run", "--loss", "wasserstein:schedule=false", "--reg", "clip", *flags, "--steps", "2",
            "--out", str(out), *TINY_FLAGS)
    config = (out / "config.toml").read_text()
    assert 'loss = "losses:wasserstein:schedule=false"' in config and 'reg = ["regularizers:clip"]' in config
    assert 'optimizer = "rmsprop"' in config and "d_steps = 5" in config
    tensors = load_file(str(sorted((out / "checkpoints").glob("*.safetensors"))[-1]))
    _, critic = default_registry().build("architecture", arch or "dcgan", shape=(1, 32, 32), z_dim=16).value
    names = [f"discriminator.{name}" for name, _ in critic.named_parameters()]
    assert names and max(tensors[name].abs().max().item() for name in names) <= 0.01
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "wasserstein" in r] == [1, 2]


@pytest.mark.skipif(not ANIME.is_dir(), reason="the anime faces are not on this machine")
def test_wgan_trains_on_the_anime_faces_at_96_pixels(tmp_path):
    run = trainer(
        {}, arch="wgan:width=2", loss="wasserstein:schedule=false", reg=["clip"], data="anime:recipe=article",
        data_root=str(ANIME), batch_size=4, steps=1, d_steps=1, z_dim=8, device="cpu",
    )
    assert run.shape == (3, 96, 96)
    stats = run.train_step(0)
    assert torch.isfinite(stats["wasserstein"])
