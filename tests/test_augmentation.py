"""Augmentations (--augment): what the discriminator sees of real and fake batches, in both updates, with every
loss and regularizer, resumable bit for bit; a third-party augmentation written from docs/augmentation.md."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gankit

from gankit.builtins.augment import OPS, AdaptiveAugment, DiffAugment
from gankit.checkpoint import list_checkpoints, load_checkpoint
from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry
from gankit.resume import resume_trainer

pytestmark = pytest.mark.usefixtures("one_thread")

RESUME_RUN = {
    "arch": "dcgan:width=8", "data": "digits:count=256", "batch_size": 16, "steps": 8, "z_dim": 16,
    "device": "cpu", "checkpoint_every": 4, "log_every": 2, "sample_every": 4,
    # No lr decay (digits recommends one): the 4-step run is extended to 8, and a decay follows the total.
    "lr_decay": 0.0,
    # p starts at 0.5 and moves by 16/50 per update: the per-image draws and p's history both matter.
    "augment": ["ada:p=0.5,kimg=0.05,interval=1,target=0.5", "diffaug:policy=color,translation,cutout"],
}

DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented_augmentation() -> str:
    """The third-party augmentation of docs/augmentation.md, "Writing an augmentation", verbatim."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "augmentation.md").read_text(encoding="utf-8"), flags=re.DOTALL)
    (block,) = [block for block in blocks if "gankit_register_augmentations" in block]
    return block


class GradientRecorder:
    """Wraps an augmentation (every other method is its own) and counts the batches that carry the generator's graph."""

    def __init__(self, inner):
        self.inner, self.calls_with_gradient = inner, 0

    def __call__(self, x):
        self.calls_with_gradient += int(x.requires_grad)
        return self.inner(x)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def logged(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows if "step" in row]


def last_checkpoint(run_dir):
    return load_checkpoint(list_checkpoints(run_dir / "checkpoints")[-1])


def test_a_third_party_augmentation_from_the_docs_trains_and_sees_fakes_with_gradients(
        install_entry_points, tiny_run, tmp_path):
    install_entry_points({"jitter": documented_augmentation()})
    trainer = Trainer(RunConfig.from_sources(overrides={**tiny_run, "augment": ["jitter:sigma=0.1"]}))
    augmentations = trainer.run.objective.augmentations.augmentations
    jitter = augmentations[0] = GradientRecorder(augmentations[0])
    trainer.train(tmp_path / "run")
    # Per step: the real and the fake batch of the discriminator update, and the fake of the generator update,
    # the only one that carries the generator's graph.
    assert (jitter.calls, jitter.calls_with_gradient) == (3 * tiny_run["steps"], tiny_run["steps"])
    assert logged(tmp_path / "run")[-1]["augment_calls"] == 3 * tiny_run["steps"]
    tensors, metadata = last_checkpoint(tmp_path / "run")
    assert metadata["states"]["augment"]["augmentations"] == [{"calls": 3 * tiny_run["steps"]}]
    assert metadata["config"]["augment"] == ["jitter:jitter:sigma=0.1"]


def test_gradients_reach_the_generator_through_the_augmentation(tiny_run):
    trainer = Trainer(RunConfig.from_sources(overrides={**tiny_run, "augment": ["diffaug"]}))
    generator, discriminator = trainer.generator, trainer.discriminator
    fake = generator(torch.randn(4, 16))
    discriminator(trainer.run.objective.augmentations(fake)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters() if p.requires_grad)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_is_differentiable_and_keeps_the_shape(op):
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    y = OPS[op](x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_whole_pixels_with_zeros_and_cutout_zeroes_a_half_size_square():
    x = torch.ones(32, 1, 16, 16)
    shifted = OPS["translation"](x, torch.Generator().manual_seed(1))
    assert set(shifted.unique().tolist()) <= {0.0, 1.0}
    # At most 2 of 16 pixels shifted in from each side: the image's centre always stays.
    assert bool((shifted[:, :, 2:14, 2:14] == 1).all()) and bool((shifted == 0).any())
    cut = OPS["cutout"](x, torch.Generator().manual_seed(1))
    zeros = (cut == 0).flatten(1).sum(1)
    assert int(zeros.max()) == 64 and int(zeros.min()) > 0  # an 8x8 square, clipped at the edges


def test_ada_moves_p_by_its_speed_towards_the_target_and_applies_nothing_at_p_0():
    ada = AdaptiveAugment(shape=(3, 8, 8), generator=torch.Generator().manual_seed(0), interval=2, kimg=1.0)
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(ada(x), x)  # p = 0: every image as it was
    ada.observe(torch.ones(100))
    assert float(ada.p) == 0.0  # adjusted only every `interval` observations
    ada.observe(torch.ones(100))
    assert float(ada.p) == pytest.approx(0.2) and float(ada.r_t) == 1.0  # 200 images of 1000: +0.2
    for _ in range(2):
        ada.observe(-torch.ones(100))
    assert float(ada.p) == 0.0  # below the target: down again, never below 0


def test_resume_with_ada_and_diffaug_equals_the_uninterrupted_run(tmp_path):
    whole = Trainer(RunConfig.from_sources(overrides=RESUME_RUN))
    whole.train(tmp_path / "whole")
    Trainer(RunConfig.from_sources(overrides={**RESUME_RUN, "steps": 4})).train(tmp_path / "half")
    resume_trainer(tmp_path / "half", overrides={"steps": 8}).train(tmp_path / "half")

    assert logged(tmp_path / "half") == logged(tmp_path / "whole")
    assert {row["augment_p"] for row in logged(tmp_path / "whole")} != {0.5}  # p did move
    (whole_tensors, whole_meta), (half_tensors, half_meta) = last_checkpoint(tmp_path / "whole"), last_checkpoint(
        tmp_path / "half")
    assert whole_tensors.keys() == half_tensors.keys()
    assert [name for name in whole_tensors if not torch.equal(whole_tensors[name], half_tensors[name])] == []
    assert whole_meta["states"]["augment"] == half_meta["states"]["augment"]


@pytest.mark.parametrize("settings", [
    {"loss": "hinge", "reg": ["spectral-norm"]},
    {"loss": "wasserstein", "reg": ["gp"], "arch": "dcgan:width=8,norm=layer"},
    {"loss": "rpgan", "reg": ["r1"], "arch": "dcgan:width=8,norm=layer"},
    {"loss": "least-squares", "conditional": True, "generator_noise": "fresh", "arch": "augtest:conditional"},
    {"loss": "bce", "precision": "bf16"},
])
def test_augmentations_train_with_every_kind_of_loss_regularizer_and_setting(tiny_run, tmp_path, settings):
    config = {**tiny_run, "steps": 2, "d_steps": 1, **settings, "augment": ["ada:p=0.5", "diffaug"]}
    registry = Registry(load_plugins([("augtest", ConditionalImages())]))
    Trainer(RunConfig.from_sources(overrides=config), registry=registry).train(tmp_path / "run")
    rows = logged(tmp_path / "run")
    assert rows and all(torch.isfinite(torch.tensor(row["d_loss"])) for row in rows)
    assert rows[-1]["augment_p"] == 0.5  # no adjustment yet: 2 of interval 4


class ConditionalGenerator(nn.Module):
    def __init__(self, shape, z_dim, num_classes):
        super().__init__()
        self.shape, self.embed = shape, nn.Embedding(num_classes, z_dim)
        self.net = nn.Sequential(nn.Linear(z_dim, math.prod(shape)), nn.Tanh())

    def forward(self, z, labels):
        return self.net(z * self.embed(labels)).view(-1, *self.shape)


class ConditionalDiscriminator(nn.Module):
    def __init__(self, shape, num_classes):
        super().__init__()
        self.features, self.embed, self.out = nn.Linear(math.prod(shape), 8), nn.Embedding(num_classes, 8), nn.Linear(8, 1)

    def forward(self, x, labels):
        hidden = torch.relu(self.features(x.flatten(1)))
        return self.out(hidden).squeeze(1) + (hidden * self.embed(labels)).sum(1)


class ConditionalImages:
    """A conditional architecture for images (the builtin dcgan is changed elsewhere at the same time)."""

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("conditional", lambda *, shape, z_dim, num_classes=2: (
            ConditionalGenerator(shape, z_dim, num_classes), ConditionalDiscriminator(shape, num_classes)))


def test_an_unaugmented_run_has_no_augmentation_state(tiny_run, tmp_path):
    trainer = Trainer(RunConfig.from_sources(overrides=tiny_run))
    trainer.train(tmp_path / "run")
    assert trainer.run.objective.augmentations is None
    _, metadata = last_checkpoint(tmp_path / "run")
    assert "augment" not in metadata["states"] and not any("augment" in key for key in logged(tmp_path / "run")[0])


@pytest.mark.parametrize("spec, message", [
    ("diffaug:policy=color,zoom", "unknown policy 'zoom'; choose from color, translation, cutout, flip"),
    ("diffaug:policy=color,color", "names an op twice"),
    ("ada:target=2", "target must be between 0 and 1"),
    ("ada:kimg=0", "kimg must be positive"),
    ("ada:interval=0", "interval must be at least 1"),
    ("ada:speed=3", "no option 'speed'"),
    ("zoom", "zoom"),
])
def test_bad_augmentation_options_are_one_error_line(tmp_path, spec, message):
    result = CliRunner().invoke(app, [
        "run", "--arch", "dcgan:width=8", "--data", "digits:count=64", "--batch-size", "16", "--steps", "1",
        "--z-dim", "16", "--device", "cpu", "--quiet", "--augment", spec, "--out", str(tmp_path / "run"),
    ])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output


def test_image_augmentations_refuse_data_that_is_not_images():
    for factory in (DiffAugment, AdaptiveAugment):
        with pytest.raises(GankitError, match=r"transforms images .* shape \(2,\)"):
            factory(shape=(2,), generator=torch.Generator())


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_torchrun_with_ada_keeps_one_p_and_resumes_exactly(tmp_path):
    from test_distributed import torchrun_gankit

    settings = ["--arch", "dcgan:width=4", "--data", "digits:count=64", "--batch-size", "8", "--z-dim", "8",
                "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu",
                "--augment", "ada:p=0.5,kimg=0.05,interval=1,target=0.5", "--augment", "diffaug"]
    torchrun_gankit(*settings, "--steps", "2", "--out", str(tmp_path / "half"))
    torchrun_gankit("--resume", str(tmp_path / "half"), "--steps", "4")
    torchrun_gankit(*settings, "--steps", "4", "--out", str(tmp_path / "whole"))
    assert logged(tmp_path / "half") == logged(tmp_path / "whole")
    # p moves by the global batch (16 images / (kimg=0.05 x 1000) = 0.32) from 0.5 on every rank alike; ranks
    # that each counted their own 8 images, or disagreed, would log steps of 0.16 or averages between.
    assert {row["augment_p"] for row in logged(tmp_path / "whole")} <= {0.0, 0.18, 0.5, 0.82, 1.0}
    whole, _ = last_checkpoint(tmp_path / "whole")
    half, _ = last_checkpoint(tmp_path / "half")
    assert [name for name in whole if not torch.equal(whole[name], half[name])] == []
