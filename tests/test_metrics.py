"""Builtin metrics on inputs with known answers: modes, SWD, the Frechet distance and FID, digits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gankit
from gankit.builtins.metrics import (
    DigitsMetric,
    FrechetInception,
    ModeCoverage,
    SlicedWasserstein,
    class_statistics,
    classifier_path,
    frechet_distance,
    inception_features_network,
    laplacian_pyramid,
    mode_statistics,
)
from gankit.builtins.toy2d import grid, ring
from gankit.components import Metric
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry


# --- modes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, modes", [(ring, 8), (grid, 25)])
def test_true_samples_cover_every_mode_with_the_protocols_hq_rate(make, modes):
    data = make(count=2500, dataset_seed=3)
    result = ModeCoverage().evaluate(data.points, data=data)
    assert result["modes"] == modes
    # Within 3 std of a 2-D Gaussian's centre: 1 - exp(-4.5) = 98.9% (the "true samples score 98.9%").
    assert result["hq"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)
    assert result["kl"] < 0.02


def test_a_collapsed_generator_scores_one_mode_and_the_kl_of_a_collapse():
    data = ring()
    collapsed = data.modes[3].repeat(2500, 1) + 0.001 * torch.randn(2500, 2)
    result = mode_statistics(collapsed, data.modes, data.mode_std)
    assert result == {"modes": 1.0, "hq": 1.0, "kl": pytest.approx(math.log(8))}


def test_samples_far_from_every_mode_are_not_high_quality():
    data = grid()
    between = torch.full((100, 2), 1.0)  # midway between four modes
    result = mode_statistics(between, data.modes, data.mode_std)
    assert result["hq"] == 0.0 and result["modes"] == 0.0


def test_kl_of_two_modes_half_and_half_is_log_of_modes_over_two():
    data = ring()
    samples = torch.cat([data.modes[0].repeat(50, 1), data.modes[1].repeat(50, 1)])
    assert mode_statistics(samples, data.modes, data.mode_std)["kl"] == pytest.approx(math.log(4))


def test_modes_refuses_data_without_known_modes():
    with pytest.raises(GankitError, match="known modes"):
        ModeCoverage().check(shape=(1, 32, 32), data=object())


# --- swd --------------------------------------------------------------------------------------------------


def smooth_images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("size, sizes", [(64, [64, 32, 16]), (96, [96, 48, 24]), (28, [28]), (16, [16]), (8, [8])])
def test_laplacian_pyramid_has_karras_resolutions_down_to_16_pixels(size, sizes):
    # Karras et al. score every resolution res >= 16 of the halving chain: 96 px stops at 24, not at 12.
    levels = laplacian_pyramid(torch.zeros(2, 3, size, size))
    assert [level.shape[-1] for level in levels] == sizes


def test_swd_of_a_set_with_itself_is_near_zero_and_grows_with_added_noise():
    metric = SlicedWasserstein(patches_per_image=16, directions=32, repeats=2)
    images = smooth_images(48, 0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    same = metric.distance(images, images.clone())["swd"]
    slightly = metric.distance(images, images + 0.1 * noise)["swd"]
    heavily = metric.distance(images, images + 0.5 * noise)["swd"]
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0 < slightly
    assert slightly < heavily
    assert set(metric.distance(images, images)) == {"swd_32px", "swd_16px", "swd"}


def test_swd_refuses_vector_data():
    with pytest.raises(GankitError, match="scores images"):
        SlicedWasserstein().check(shape=(2,), data=None)


# --- Frechet distance and FID -----------------------------------------------------------------------------


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mean_a - mean_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b)) == pytest.approx(expected)


def test_frechet_distance_matches_the_closed_form_for_commuting_full_covariances():
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    var_a, var_b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 2.0, 8.0, 1.0])
    cov_a, cov_b = rotation @ np.diag(var_a) @ rotation.T, rotation @ np.diag(var_b) @ rotation.T
    expected = ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance(np.zeros(4), cov_a, np.zeros(4), cov_b) == pytest.approx(expected)
    assert frechet_distance(np.ones(4), cov_a, np.ones(4), cov_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_without_weights_says_in_one_line_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(GankitError) as error:
        FrechetInception().check(shape=(3, 32, 32), data=None)
    message = str(error.value)
    assert "\n" not in message
    assert "--weights" in message and "pt_inception" in message and "never downloads" in message


def test_fid_finds_weights_in_the_torch_hub_cache(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    FrechetInception().check(shape=(1, 32, 32), data=None)  # found: no error


def test_fid_builds_pytorch_fid_inception_from_its_state_dict():
    from torchvision.models.inception import Inception3

    # pytorch-fid's weights have 1008 classes; their blocks pool as the TF graph behind published FIDs.
    state = Inception3(num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    network = inception_features_network(state)
    assert type(network.Mixed_5b).__name__ == "FIDInceptionA"
    assert type(network.Mixed_7c).__name__ == "FIDInceptionE"
    assert isinstance(network.fc, torch.nn.Identity) and not network.training


def test_fid_pipeline_scores_identical_sets_zero_and_shifted_sets_by_the_shift(monkeypatch):
    class MeanColour(torch.nn.Module):  # stands in for Inception: features are per-image colour means
        def forward(self, batch):
            assert batch.shape[1:] == (3, 299, 299)
            return batch.mean(dim=(2, 3))

    metric = FrechetInception(batch_size=8)
    monkeypatch.setattr(metric, "network", lambda: MeanColour())
    images = smooth_images(16, 0)

    class Real:
        def tensor(self):
            return images

    assert metric.evaluate(images, data=Real())["fid"] == pytest.approx(0.0, abs=1e-6)
    # Shifting every image by 0.5 shifts the mean features by 0.5 per channel and leaves the covariance.
    assert metric.evaluate(images + 0.5, data=Real())["fid"] == pytest.approx(3 * 0.25, rel=1e-4)
    grayscale = images[:, :1]
    assert metric.features(grayscale).shape == (16, 3)  # one channel is repeated to RGB


# --- digits -----------------------------------------------------------------------------------------------


def test_class_statistics_of_confident_even_and_collapsed_predictions():
    even = torch.eye(10).repeat(10, 1)
    assert class_statistics(even) == {"classes": 10.0, "kl": 0.0, "confidence": 1.0, "score": pytest.approx(10.0)}
    collapsed = torch.eye(10)[[4] * 50]
    result = class_statistics(collapsed)
    assert result["classes"] == 1.0 and result["kl"] == pytest.approx(math.log(10)) and result["score"] == pytest.approx(1.0)


def test_digits_metric_sees_ten_classes_in_real_digits_and_one_in_a_collapse():
    from gankit.builtins.digits import DigitsDataSource

    metric = DigitsMetric(train_count=2000, epochs=3)  # tiny: trained in seconds, cached in GANKIT_CACHE_DIR
    data = DigitsDataSource(count=500, dataset_seed=7)
    metric.check(shape=data.shape, data=data)
    real = data.tensor().float() / 127.5 - 1
    result = metric.evaluate(real, data=data)
    assert result["classes"] == 10
    assert result["kl"] < 0.1 and result["confidence"] > 0.7 and result["score"] > 5
    assert classifier_path(32, 2000, 3).is_file()
    collapsed = metric.evaluate(real[:1].repeat(200, 1, 1, 1), data=data)
    assert collapsed["classes"] == 1 and collapsed["score"] == pytest.approx(1.0, abs=1e-6)


def test_digits_metric_refuses_colour_images():
    with pytest.raises(GankitError, match="grayscale"):
        DigitsMetric().check(shape=(3, 32, 32), data=None)


# --- the hook ---------------------------------------------------------------------------------------------


class Plugin:
    class MeanNorm(Metric):
        key = "norm"

        def evaluate(self, samples, *, data):
            return {"norm": float(samples.flatten(1).norm(dim=1).mean())}

    @gankit.hookimpl
    def gankit_register_metrics(self, register):
        register("mean-norm", self.MeanNorm, description="mean L2 norm")


def test_a_plugin_registers_a_metric_through_the_hook():
    registry = Registry(load_plugins([("norms", Plugin())], entry_points=False))
    assert {"modes", "swd", "fid", "digits", "mean-norm"} <= set(registry.names("metric"))
    metric = registry.build("metric", "mean-norm").value
    assert metric.evaluate(torch.ones(3, 4), data=None) == {"norm": 2.0}
