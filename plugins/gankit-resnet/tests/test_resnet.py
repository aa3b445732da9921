"""The gankit-resnet example plugin: network shapes, raw scores, entry-point registration and training."""
from __future__ import annotations

from importlib import metadata

import pytest
import torch
from typer.testing import CliRunner

import gankit
from gankit.cli import app
from gankit.components import DataSource
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry
from gankit_resnet import SUPPORTED_SIZES, resnet

Z_DIM = 8
TINY_WIDTH = 2


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    # The digits source caches what it renders; never into the user's cache.
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))


def entry_point_installed() -> bool:
    return any(ep.name == "resnet" for ep in metadata.entry_points(group="gankit"))


needs_install = pytest.mark.skipif(
    not entry_point_installed(), reason="gankit-resnet is not installed (pip install -e plugins/gankit-resnet)"
)


# --- networks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SUPPORTED_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(size, channels):
    generator, discriminator = resnet(shape=(channels, size, size), z_dim=Z_DIM, width=TINY_WIDTH)
    images = generator(torch.randn(3, Z_DIM))
    assert images.shape == (3, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # tanh output, like the data in [-1, 1]
    scores = discriminator(images)
    assert scores.shape == (3,)


def test_discriminator_returns_raw_scores_not_probabilities():
    _, discriminator = resnet(shape=(3, 32, 32), z_dim=Z_DIM, width=TINY_WIDTH)
    with torch.no_grad():
        discriminator.score.bias.fill_(-5.0)
        discriminator.score.weight.zero_()
    scores = discriminator(torch.randn(4, 3, 32, 32))
    # A sigmoid would squash these into (0, 1); the loss owns the link function.
    assert torch.allclose(scores, torch.full((4,), -5.0))
    assert not any(isinstance(module, torch.nn.Sigmoid) for module in discriminator.modules())


def test_width_scales_the_networks():
    small = sum(p.numel() for net in resnet(shape=(1, 32, 32), z_dim=Z_DIM, width=2) for p in net.parameters())
    large = sum(p.numel() for net in resnet(shape=(1, 32, 32), z_dim=Z_DIM, width=8) for p in net.parameters())
    assert large > 4 * small


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 48, 48), "32, 64, 96, 128"),
        ((3, 32, 64), "square"),
        ((2,), "square"),
    ],
)
def test_unsupported_shapes_name_what_is_supported(shape, message):
    with pytest.raises(GankitError, match=message):
        resnet(shape=shape, z_dim=Z_DIM)


def test_width_must_be_positive():
    with pytest.raises(GankitError, match="width must be positive"):
        resnet(shape=(1, 32, 32), z_dim=Z_DIM, width=0)


def test_conditional_networks_are_sngan_projection():
    generator, discriminator = resnet(
        shape=(3, 32, 32), z_dim=Z_DIM, width=TINY_WIDTH, num_classes=10, discriminator_outputs=("class_logits",)
    )
    labels = torch.tensor([0, 1, 2])
    images = generator(torch.randn(3, Z_DIM), labels)
    scores, outputs = discriminator(images, labels)
    assert images.shape == (3, 3, 32, 32) and scores.shape == (3,) and outputs["class_logits"].shape == (3, 10)
    # Class-conditional BatchNorm in every up-block (two each), the last one before the image unconditional.
    block_norms = [m for m in generator.blocks.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert block_norms and not any(norm.affine for norm in block_norms)
    assert generator.to_image[0].affine
    discriminator.eval()
    with torch.no_grad():
        other_class, _ = discriminator(images, labels.flip(0))
    assert not torch.allclose(scores, other_class)  # the projection: the label alone moves the score


def test_conditioning_is_refused_where_it_cannot_work():
    with pytest.raises(GankitError, match="cannot give the discriminator output 'features'; it can give: class_logits"):
        resnet(shape=(3, 32, 32), z_dim=Z_DIM, width=TINY_WIDTH, num_classes=10, discriminator_outputs=("features",))
    with pytest.raises(GankitError, match="--conditional"):
        resnet(shape=(3, 32, 32), z_dim=Z_DIM, width=TINY_WIDTH, discriminator_outputs=("class_logits",))
    generator, _ = resnet(shape=(3, 32, 32), z_dim=Z_DIM, width=TINY_WIDTH, num_classes=10)
    with pytest.raises(GankitError, match="needs the class labels"):
        generator(torch.randn(2, Z_DIM))
    with pytest.raises(GankitError, match="integer class indices"):
        generator(torch.randn(2, Z_DIM), torch.tensor([1, 2], dtype=torch.uint8))


# --- registration ---------------------------------------------------------------------------------------


@needs_install
def test_entry_point_registers_resnet_in_the_default_registry():
    from gankit.plugins import reset_default_plugins
    from gankit.registry import default_registry

    reset_default_plugins()
    try:
        registry = default_registry()
        component = registry.get("architecture", "resnet")
        assert component.plugin == "resnet"
        assert component.factory is resnet
        assert registry.get("architecture", "resnet:resnet") is component
        assert registry.get("architecture", "ResNet_GAN") is component  # alias, case and _ insensitive
        info = registry.plugins.infos["resnet"]
        assert info.source == "entry point"
        assert info.status == "ok"
        assert info.version == metadata.version("gankit-resnet")
        assert info.provides == {"architecture": ["resnet"]}
    finally:
        reset_default_plugins()


@needs_install
def test_width_option_comes_from_the_factory_signature():
    registry = Registry(load_plugins())
    built = registry.build("architecture", "resnet:width=3", shape=(1, 32, 32), z_dim=Z_DIM)
    assert built.spec == "resnet:resnet:width=3"
    generator, _ = built.value
    assert generator.start_channels == 3 * 8
    with pytest.raises(GankitError, match="no option 'depth'; valid options: width"):
        registry.resolve("architecture", "resnet:depth=3")


# --- training -------------------------------------------------------------------------------------------


class TinyImages(DataSource):
    """32 random grey 32x32 images held in memory: enough to exercise training."""

    def __init__(self, *, root=None, image_size=None, seed=0, count: int = 32):
        generator = torch.Generator().manual_seed(seed)
        self._images = torch.randint(0, 256, (count, 1, 32, 32), dtype=torch.uint8, generator=generator)
        self.shape = (1, 32, 32)

    def __len__(self):
        return self._images.shape[0]

    def __getitem__(self, index):
        return self._images[index].float() / 127.5 - 1.0

    def tensor(self):
        return self._images


class TinyDataPlugin:
    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("tiny-images", TinyImages, description="random 32x32 images for tests")


def tiny_registry() -> Registry:
    # The resnet plugin is added as a local plugin too, so these tests run even before it is installed.
    import gankit_resnet.plugin

    plugins = load_plugins([("tiny-data", TinyDataPlugin()), ("resnet-local", gankit_resnet.plugin)], entry_points=False)
    return Registry(plugins)


def test_three_training_steps_through_the_python_api(tmp_path):
    config = RunConfig.from_sources(
        None,
        {
            "arch": f"resnet:width={TINY_WIDTH}", "data": "tiny-images", "batch_size": 4, "steps": 3,
            "z_dim": Z_DIM, "device": "cpu", "log_every": 1,
        },
    )
    trainer = Trainer(config, registry=tiny_registry())
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    out = trainer.train(tmp_path / "run")
    assert trainer.step == 3
    assert (out / "checkpoints" / "step-0000003.safetensors").is_file()
    assert (out / "samples" / "step-0000003.png").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, trainer.generator.parameters())]
    assert any(changed), "training did not update the generator"


@needs_install
def test_gankit_run_arch_resnet_on_the_command_line(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "run", "--arch", f"resnet:width={TINY_WIDTH}", "--data", "digits:count=64", "--steps", "3",
            "--batch-size", "4", "--z-dim", str(Z_DIM), "--device", "cpu", "--out", str(out), "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Run written to {out}" in result.output
    config = (out / "config.toml").read_text()
    assert f'arch = "resnet:resnet:width={TINY_WIDTH}"' in config
    assert (out / "checkpoints" / "step-0000003.safetensors").is_file()


@needs_install
def test_list_plugins_shows_the_entry_point():
    from gankit.plugins import reset_default_plugins

    reset_default_plugins()
    try:
        result = CliRunner().invoke(app, ["list-plugins", "--json"])
    finally:
        reset_default_plugins()
    assert result.exit_code == 0, result.output
    import json

    (resnet_info,) = [info for info in json.loads(result.output) if info["name"] == "resnet"]
    assert resnet_info["source"] == "entry point"
    assert resnet_info["version"] == metadata.version("gankit-resnet")
    assert resnet_info["provides"] == {"architecture": ["resnet"]}
