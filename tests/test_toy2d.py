"""The 2-D benchmark data (ring, grid), the mlp architecture with packing, and the recipe the data recommends."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gankit.builtins.mlp import mlp
from gankit.builtins.packing import PackedDiscriminator
from gankit.builtins.toy2d import GRID_RECIPE, RING_RECIPE, TOY_RECIPE, grid, ring
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError


def test_ring_is_eight_gaussians_on_the_unit_circle_with_std_001():
    data = ring(count=8000, dataset_seed=0)
    assert data.shape == (2,) and data.tensor().shape == (8000, 2)
    assert torch.allclose(data.modes.norm(dim=1), torch.ones(8))
    assert torch.allclose(data.modes[2], torch.tensor([0.0, 1.0]), atol=1e-6)
    offsets = data.points - data.modes[data.mode_index]
    assert offsets.std().item() == pytest.approx(0.01, rel=0.05)


def test_grid_is_25_gaussians_on_minus4_to_4_with_std_005():
    data = grid(count=10000, dataset_seed=0)
    assert sorted(set(data.modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len(data.modes) == 25
    offsets = data.points - data.modes[data.mode_index]
    assert offsets.std().item() == pytest.approx(0.05, rel=0.05)
    # Every mode gets about the same share.
    assert torch.bincount(data.mode_index, minlength=25).min() > 300


def test_the_data_depends_only_on_the_dataset_seed():
    assert torch.equal(ring(seed=1).points, ring(seed=2).points)
    assert not torch.equal(ring(dataset_seed=1).points, ring(dataset_seed=2).points)


def test_mlp_generator_maps_noise_to_vectors_and_the_discriminator_returns_one_score_each():
    generator, discriminator = mlp(shape=(2,), z_dim=8, width=16, depth=2)
    fake = generator(torch.randn(5, 8))
    assert fake.shape == (5, 2)
    assert discriminator(fake).shape == (5,)


def test_mlp_g_width_and_d_width_size_one_network_each():
    generator, discriminator = mlp(shape=(2,), z_dim=8, width=16, depth=2, g_width=32)
    assert [m.out_features for m in generator.net if isinstance(m, torch.nn.Linear)] == [32, 32, 2]
    assert [m.out_features for m in discriminator.net if isinstance(m, torch.nn.Linear)] == [16, 16, 1]
    _, narrow = mlp(shape=(2,), z_dim=8, width=16, depth=1, d_width=4)
    assert narrow.net[0].out_features == 4
    with pytest.raises(GankitError, match="g_width must be positive"):
        mlp(shape=(2,), z_dim=8, g_width=0)


def test_mlp_refuses_images():
    with pytest.raises(GankitError, match="vector data"):
        mlp(shape=(1, 32, 32), z_dim=8)


def test_packing_gives_every_sample_its_packs_score():
    inner = torch.nn.Linear(6, 1)  # 3 samples of 2 features per pack
    packed = PackedDiscriminator(inner, 3)
    batch = torch.randn(6, 2)
    scores = packed(batch)
    assert scores.shape == (6,)
    first_pack = inner(batch[:3].reshape(1, 6)).reshape(())
    assert torch.allclose(scores[:3], first_pack.expand(3))
    assert packed(batch[:2]).shape == (2,)  # an incomplete batch is completed, not refused


def test_data_source_recommends_the_2d_recipe_and_user_settings_win():
    trainer = Trainer(RunConfig.from_sources(overrides={"data": "grid", "device": "cpu", "steps": 3}))
    config = trainer.config
    assert config.arch == GRID_RECIPE["arch"] and config.ema == TOY_RECIPE["ema"]
    assert config.batch_size == TOY_RECIPE["batch_size"] and config.metric == "metrics:modes"
    assert config.reg == GRID_RECIPE["reg"] and config.d_steps == TOY_RECIPE["d_steps"]
    assert config.lr_decay == GRID_RECIPE["lr_decay"] and config.z_dim == 2
    assert config.steps == 3  # set by the user
    # The data source's optimizer settings outrank the ones its loss recommends (least squares wants 2e-4).
    ring_config = Trainer(RunConfig.from_sources(overrides={"data": "ring", "device": "cpu", "steps": 3})).config
    assert ring_config.loss == RING_RECIPE["loss"] == "losses:least-squares"
    assert ring_config.lr == RING_RECIPE["lr"] and ring_config.betas == RING_RECIPE["betas"]
    mine = Trainer(RunConfig.from_sources(
        overrides={"data": "ring", "arch": "mlp:width=16,depth=1", "lr": 0.01, "device": "cpu"}
    ))
    assert mine.config.arch == "mlp:mlp:width=16,depth=1" and mine.config.lr == 0.01


def test_a_2d_run_writes_raw_samples_and_scatter_plots(tmp_path):
    settings = {
        "data": "ring:count=512", "arch": "mlp:width=16,depth=2,pack=2", "batch_size": 32, "steps": 4,
        "sample_every": 2, "device": "cpu", "z_dim": 4,
    }
    out = Trainer(RunConfig.from_sources(overrides=settings)).train(tmp_path / "run")
    names = sorted(p.name for p in (out / "samples").iterdir())
    assert names == ["step-0000002.npy", "step-0000002.png", "step-0000004.npy", "step-0000004.png"]
    points = np.load(out / "samples" / "step-0000004.npy")
    assert points.shape == (1000, 2) and np.isfinite(points).all()
