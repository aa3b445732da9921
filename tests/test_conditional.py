"""Class-conditional training (issue 14, docs/conditional.md): labels go from the data through the batch stream to
both networks, the losses and the regularizers, into the sample grid and the checkpoints; a resumed conditional
run continues bit for bit; a run that cannot be conditional is refused in one line.

The conditional networks here are a tiny architecture registered by a test plugin, as a third party would."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import gankit
import gankit.plugins
import gankit.registry
from gankit.batches import BatchStream
from gankit.checkpoint import list_checkpoints, load_checkpoint
from gankit.cli import app
from gankit.components import DataSource, Loss
from gankit.conditioning import grid_inputs
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.plugins import load_plugins
from gankit.registry import Registry
from gankit.resume import resume_trainer

COUNT, CLASSES = 48, 3
calls: list[tuple] = []  # ("G", labels) and ("D", examples, labels), in call order


def point_labels() -> torch.Tensor:
    return torch.arange(COUNT) % CLASSES


def labelled_points() -> torch.Tensor:
    # The first coordinate says the class, so a test can tell from a real example which label it must come with.
    noise = torch.rand(COUNT, generator=torch.Generator().manual_seed(1)) - 0.5
    return torch.stack([point_labels().float() / 2 - 0.5, noise], dim=1)


def class_of(points: torch.Tensor) -> torch.Tensor:
    return torch.round((points[:, 0] + 0.5) * 2).long()


class Points(DataSource):
    """Labelled 2-D points on the fast path (``tensor()`` and ``labels()``), classes known before building."""

    shape = (2,)
    num_classes = CLASSES
    class_names = ("left", "middle", "right")

    def __init__(self, **_):
        self.points = labelled_points()

    @classmethod
    def planned_shape(cls, **_):
        return cls.shape

    def __len__(self):
        return COUNT

    def tensor(self):
        return self.points

    def labels(self):
        return point_labels()


class Items(DataSource):
    """The same labelled points read item by item, as ``(example, label)`` pairs; classes known once built."""

    shape = (2,)

    def __init__(self, **_):
        self.num_classes = CLASSES
        self.points = labelled_points()

    def __len__(self):
        return COUNT

    def __getitem__(self, index):
        return self.points[index], int(point_labels()[index])


class Unlabelled(Items):
    """The same points without labels."""

    def __init__(self, **_):
        self.points = labelled_points()

    def __getitem__(self, index):
        return self.points[index]


class Undecodable(Points):
    """Classes and shape declared up front, data that cannot be built: what fails first was checked before."""

    def __init__(self, **_):
        raise GankitError("the data was built")


class Squares(DataSource):
    """Labelled 1x4x4 images, for the sample grid."""

    shape = (1, 4, 4)
    num_classes = CLASSES

    def __init__(self, **_):
        self.images = (point_labels().float() / CLASSES).view(-1, 1, 1, 1).expand(COUNT, 1, 4, 4).clone()

    def __len__(self):
        return COUNT

    def tensor(self):
        return self.images

    def labels(self):
        return point_labels()


class Generator(nn.Module):
    def __init__(self, z_dim: int, shape, num_classes: int):
        super().__init__()
        self.shape = tuple(shape)
        size = int(torch.tensor(self.shape).prod())
        self.net = nn.Linear(z_dim, size)
        self.embed = nn.Embedding(num_classes, size)

    def forward(self, z, labels):
        calls.append(("G", labels.detach().clone()))
        return torch.tanh(self.net(z) + self.embed(labels)).view(-1, *self.shape)


class Discriminator(nn.Module):
    """A projection discriminator: score = linear(phi(x)) + <embed(y), phi(x)>, and class logits on request."""

    def __init__(self, shape, num_classes: int, outputs: tuple[str, ...]):
        super().__init__()
        self.body = nn.Linear(int(torch.tensor(tuple(shape)).prod()), 8)
        self.head = nn.Linear(8, 1)
        self.embed = nn.Embedding(num_classes, 8)
        self.classify = nn.Linear(8, num_classes) if outputs else None

    def forward(self, x, labels):
        calls.append(("D", x.detach().flatten(1).clone(), labels.detach().clone()))
        features = torch.tanh(self.body(x.flatten(1)))
        scores = self.head(features).squeeze(1) + (self.embed(labels) * features).sum(1)
        if self.classify is None:
            return scores
        return scores, {"class_logits": self.classify(features)}


def conditional(*, shape, z_dim, num_classes: int = 0, discriminator_outputs: tuple = (), width: int = 8):
    if not num_classes:
        return nn.Sequential(nn.Linear(z_dim, shape[0])), nn.Sequential(nn.Linear(shape[0], 1), nn.Flatten(0))
    return Generator(z_dim, shape, num_classes), Discriminator(shape, num_classes, tuple(discriminator_outputs))


def no_outputs(*, shape, z_dim, num_classes: int = 0):
    return conditional(shape=shape, z_dim=z_dim, num_classes=num_classes)


def plain(*, shape, z_dim):
    return conditional(shape=shape, z_dim=z_dim)


class ClassifyingLoss(Loss):
    """BCE plus the cross-entropy of the class logits (the ACGAN form); records what the engine passes."""

    discriminator_outputs = ("class_logits",)
    received: list[dict] = []

    def discriminator_loss(self, real_scores, fake_scores, *, real_outputs, fake_outputs, labels):
        self.received.append({"kind": "d", "real": real_outputs, "fake": fake_outputs, "labels": labels})
        bce = nn.functional.binary_cross_entropy_with_logits
        adversarial = bce(real_scores, torch.ones_like(real_scores)) + bce(fake_scores, torch.zeros_like(fake_scores))
        return adversarial + nn.functional.cross_entropy(real_outputs["class_logits"], labels)

    def generator_loss(self, fake_scores, *, fake_outputs, labels):
        self.received.append({"kind": "g", "fake": fake_outputs, "labels": labels})
        bce = nn.functional.binary_cross_entropy_with_logits
        classified = nn.functional.cross_entropy(fake_outputs["class_logits"], labels)
        return bce(fake_scores, torch.ones_like(fake_scores)) + classified


class WrongSignatureLoss(ClassifyingLoss):
    def generator_loss(self, fake_scores):
        return fake_scores.mean()


class Plugin:
    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("cond", conditional)
        register("no-outputs", no_outputs)
        register("plain", plain)

    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("points", Points)
        register("items", Items)
        register("unlabelled", Unlabelled)
        register("squares", Squares)
        register("undecodable", Undecodable)

    @gankit.hookimpl
    def gankit_register_losses(self, register):
        register("classifying", ClassifyingLoss)
        register("wrong-signature", WrongSignatureLoss)


def registry() -> Registry:
    return Registry(load_plugins([("condtest", Plugin())], entry_points=False))


def config(**settings) -> RunConfig:
    values = {
        "arch": "condtest:cond", "data": "condtest:points", "loss": "bce", "conditional": True, "steps": 2,
        "batch_size": 6, "z_dim": 4, "device": "cpu", "sample_every": 100, "checkpoint_every": 100, **settings,
    }
    return RunConfig.from_sources(None, values)


@pytest.fixture(autouse=True)
def fresh_calls():
    calls.clear()
    ClassifyingLoss.received.clear()
    yield
    calls.clear()


def train(out, **settings) -> Trainer:
    """A conditional run trained to ``out``; ``calls`` then holds the networks' calls of the training steps only
    (not the dry run of the build, nor the samples)."""
    trainer = Trainer(config(**settings), registry=registry())
    calls.clear()
    trainer.train(out)
    calls[:] = [call for call in calls if len(call[-1]) == trainer.config.batch_size]
    return trainer


def d_steps_of(recorded: list[tuple]) -> list[list[tuple]]:
    """The recorded calls cut at each generator call that starts a discriminator step (G, D(real), D(fake)...)."""
    steps, current = [], []
    for call in recorded:
        if call[0] == "G" and current and any(c[0] == "D" for c in current):
            steps.append(current)
            current = []
        current.append(call)
    return steps + [current]


# --- labels through the step --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["condtest:points", "condtest:items"])
def test_each_step_gives_both_networks_the_labels_of_its_real_batch(tmp_path, data):
    train(tmp_path / "run", data=data, steps=3)
    seen = 0
    for step_calls in d_steps_of(calls):
        generated, real = step_calls[0], step_calls[1]
        assert generated[0] == "G" and real[0] == "D"
        # The real batch comes with its own labels, and the fakes of the step are made and scored with them.
        assert torch.equal(real[2], class_of(real[1]))
        assert torch.equal(generated[1], real[2])
        assert all(torch.equal(call[-1], real[2]) for call in step_calls)
        seen += 1
    assert seen >= 3
    assert len({tuple(c[2].tolist()) for c in calls if c[0] == "D"}) > 1  # the labels change with the batch


def test_fresh_noise_generator_update_uses_the_last_real_batch_labels(tmp_path):
    train(tmp_path / "run", steps=1, d_steps=2, generator_noise="fresh")
    training = calls[: 2 * 3 + 2]  # two D steps (G, D, D) then the fresh G and its D call
    last_real = training[4]
    assert training[6][0] == "G" and torch.equal(training[6][1], last_real[2])
    assert training[7][0] == "D" and torch.equal(training[7][2], last_real[2])


@pytest.mark.parametrize("reg", ["r1", "gp"])
def test_penalties_differentiate_the_discriminator_bound_to_the_step_labels(tmp_path, reg):
    trainer = train(tmp_path / "run", reg=[reg], steps=2)
    assert torch.isfinite(torch.stack([p.detach().sum() for p in trainer.discriminator.parameters()])).all()
    for step_calls in d_steps_of(calls):
        real = step_calls[1]
        # G, D(real), D(fake), then the penalty's own call of D: the same labels.
        assert len([c for c in step_calls if c[0] == "D"]) >= 3
        assert all(torch.equal(call[-1], real[2]) for call in step_calls if call[0] == "D")


def test_a_loss_with_discriminator_outputs_gets_them_with_the_labels(tmp_path):
    train(tmp_path / "run", loss="condtest:classifying", steps=2)
    kinds = [record["kind"] for record in ClassifyingLoss.received]
    assert kinds[:2] == ["d", "g"] and len(kinds) >= 4
    for record in ClassifyingLoss.received:
        assert record["labels"].dtype == torch.int64 and record["labels"].shape == (6,)
        for outputs in (record["fake"], record.get("real")):
            if outputs is not None:
                assert outputs["class_logits"].shape == (6, CLASSES)
    d_records = [r for r in ClassifyingLoss.received if r["kind"] == "d"]
    d_calls = [c for c in calls if c[0] == "D"]
    assert torch.equal(d_records[0]["labels"], class_of(d_calls[0][1]))


# --- unconditional runs ---------------------------------------------------------------------------------------


def final_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for m in (trainer.generator, trainer.discriminator) for k, v in m.state_dict().items()}


def test_a_labelled_source_trains_unconditionally_on_exactly_the_same_batches(tmp_path):
    settings = {"arch": "condtest:plain", "conditional": False, "steps": 3}
    labelled = Trainer(config(data="condtest:items", **settings), registry=registry())
    labelled.train(tmp_path / "labelled")
    unlabelled = Trainer(config(data="condtest:unlabelled", **settings), registry=registry())
    unlabelled.train(tmp_path / "unlabelled")
    first, second = final_weights(labelled), final_weights(unlabelled)
    assert all(torch.equal(first[k], second[k]) for k in first)
    _, metadata = load_checkpoint(list_checkpoints(tmp_path / "labelled" / "checkpoints")[-1])
    assert "num_classes" not in metadata and "class_names" not in metadata


def test_the_batch_stream_gives_labels_at_the_same_indices_without_moving_the_batches():
    source = Points()
    plain_stream = BatchStream(source, 6, seed=5, device=torch.device("cpu"))
    labelled_stream = BatchStream(source, 6, seed=5, device=torch.device("cpu"), num_classes=CLASSES)
    for _ in range(20):  # past two epochs
        batch, labels = labelled_stream.next_with_labels()
        assert torch.equal(batch, plain_stream.next())
        assert torch.equal(labels, class_of(batch))


# --- samples and checkpoints ------------------------------------------------------------------------------------


def test_the_grid_has_one_row_per_class_with_the_same_noise_in_each_column():
    fixed = torch.randn(64, 4)
    noise, labels = grid_inputs(fixed, 40)
    assert labels.tolist()[:16] == [0] * 8 + [1] * 8 and labels.max() == 31 and len(labels) == 32 * 8
    assert torch.equal(noise.view(32, 8, 4)[5], fixed[:8])


def test_a_conditional_image_run_writes_a_grid_of_classes_by_eight(tmp_path):
    Trainer(config(data="condtest:squares", steps=1), registry=registry()).train(tmp_path / "run")
    with Image.open(tmp_path / "run" / "samples" / "step-0000001.png") as grid:
        assert grid.size == (8 * (4 + 2) + 2, CLASSES * (4 + 2) + 2)  # padding 2 around 4x4 images


def test_a_conditional_2d_run_writes_its_scatter(tmp_path):
    Trainer(config(steps=1), registry=registry()).train(tmp_path / "run")
    assert (tmp_path / "run" / "samples" / "step-0000001.png").is_file()


def test_checkpoints_record_the_classes(tmp_path):
    Trainer(config(steps=1), registry=registry()).train(tmp_path / "run")
    _, metadata = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert metadata["num_classes"] == CLASSES and metadata["class_names"] == ["left", "middle", "right"]
    assert metadata["config"]["conditional"] is True


def test_unnamed_classes_are_recorded_by_their_indices(tmp_path):
    Trainer(config(data="condtest:items", steps=1), registry=registry()).train(tmp_path / "run")
    _, metadata = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert metadata["class_names"] == ["0", "1", "2"]


@pytest.mark.parametrize("loss", ["bce", "condtest:classifying"])
def test_a_resumed_conditional_run_ends_with_the_same_weights(tmp_path, loss):
    settings = {"loss": loss, "steps": 4, "checkpoint_every": 2, "reg": ["r1"]}
    whole = Trainer(config(**settings), registry=registry())
    whole.train(tmp_path / "whole")
    Trainer(config(**{**settings, "steps": 2}), registry=registry()).train(tmp_path / "halves")
    resumed = resume_trainer(tmp_path / "halves", overrides={"steps": 4}, registry=registry())
    assert resumed.run.data.num_classes == CLASSES
    resumed.train(tmp_path / "halves")
    first, second = final_weights(whole), final_weights(resumed)
    assert first.keys() == second.keys() and "embed.weight" in first
    assert all(torch.equal(first[k], second[k]) for k in first)


# --- refused in one line ---------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_plugins(monkeypatch):
    """The CLI sees the test plugin beside the builtins."""
    monkeypatch.setattr(gankit.plugins, "_default", load_plugins([("condtest", Plugin())], entry_points=False))
    monkeypatch.setattr(gankit.registry, "_default", None)


def one_error_line(args: list[str], tmp_path) -> str:
    result = runner.invoke(app, ["run", *args, "--z-dim", "4", "--batch-size", "6", "--steps", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "run"), "--quiet"])
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output[:2000]
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["--data", "condtest:unlabelled", "--arch", "condtest:cond"],
     "Error: --conditional needs labelled data: data 'unlabelled' has no classes (labelled builtins: digits, mnist, "
     "fashion-mnist, cifar10, ring, grid, folder:classes=subfolders)"),
    (["--data", "condtest:items", "--arch", "condtest:plain"], "architecture 'condtest:plain' cannot condition"),
    # Classes known before the data is built: refused before it is.
    (["--data", "condtest:undecodable", "--arch", "condtest:plain"], "architecture 'condtest:plain' cannot condition"),
    (["--data", "condtest:points", "--arch", "condtest:no-outputs", "--loss", "condtest:classifying"],
     "needs the discriminator outputs class_logits, which architecture 'condtest:no-outputs' cannot give"),
    (["--data", "condtest:points", "--arch", "condtest:cond", "--loss", "condtest:wrong-signature"],
     "its generator_loss does not take fake_outputs, labels"),
])
def test_what_cannot_be_conditional_is_refused_in_one_line(cli_plugins, tmp_path, args, expected):
    assert expected in one_error_line(["--conditional", *args], tmp_path)


def test_the_flag_trains_a_conditional_run_through_the_cli(cli_plugins, tmp_path):
    result = runner.invoke(app, ["run", "--conditional", "--data", "condtest:points", "--arch", "condtest:cond",
                                 "--z-dim", "4", "--batch-size", "6", "--steps", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "conditional = true" in (tmp_path / "run" / "config.toml").read_text()


class BadLabels(Points):
    def __init__(self, labels=None, **_):
        super().__init__()
        self.bad = labels

    def labels(self):
        return self.bad


@pytest.mark.parametrize("labels, expected", [
    (None, "labels() returned None"),
    (torch.arange(COUNT) % 4, "must be in [0, 3)"),
    (torch.arange(COUNT) * -1, "must be in [0, 3)"),
    (torch.zeros(COUNT), "must be integers"),
    (torch.zeros(COUNT - 1, dtype=torch.int64), f"must have shape ({COUNT},)"),
    ([0] * COUNT, "must be a tensor"),
])
def test_bad_labels_are_refused_before_training(labels, expected):
    with pytest.raises(GankitError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        BatchStream(BadLabels(labels), 6, seed=0, device=torch.device("cpu"), num_classes=CLASSES)


@pytest.mark.parametrize("num_classes, names, expected", [
    (1, None, "num_classes must be an integer of at least 2"),
    (True, None, "num_classes must be an integer of at least 2"),
    ("3", None, "num_classes must be an integer of at least 2"),
    (3, ("a", "b"), "class_names must be 3 strings"),
    (3, "abc", "class_names must be 3 strings"),
])
def test_bad_class_declarations_are_refused(num_classes, names, expected):
    from gankit.conditioning import data_classes

    source = Items()
    source.num_classes, source.class_names = num_classes, names
    with pytest.raises(GankitError, match=expected):
        data_classes(source, "items")


def test_the_guide_example_trains_a_conditional_run(tmp_path):
    # docs/conditional.md's plugin (labelled data, projection discriminator, a loss reading class_logits).
    import re
    from pathlib import Path
    import types

    text = (Path(__file__).resolve().parent.parent / "docs" / "conditional.md").read_text(encoding="utf-8")
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL) if "hookimpl" in block]
    module = types.ModuleType("conditional_guide_example")
    exec(compile(code, "docs/conditional.md", "exec"), module.__dict__)
    registry = Registry(load_plugins([("guide", module)], entry_points=False))
    settings = {"arch": "blob-mlp:hidden=8", "data": "two-blobs:count=64", "loss": "blob-acgan", "steps": 2,
                "batch_size": 8, "z_dim": 4, "device": "cpu", "conditional": True}
    trainer = Trainer(RunConfig.from_sources(None, settings), registry=registry)
    trainer.train(tmp_path / "run")
    assert trainer.run.data.class_names == ("left", "right") and trainer.discriminator.embed is not None
    # Without --conditional the same plugin builds its plain networks: no embedding, no labels read.
    plain = Trainer(RunConfig.from_sources(None, {**settings, "loss": "bce", "conditional": False}), registry=registry)
    assert plain.generator.embed is None and plain.discriminator.class_logits is None


# --- more hostile input -----------------------------------------------------------------------------------------


def test_the_setting_round_trips_through_toml(tmp_path):
    written = config(conditional=True)
    (tmp_path / "run.toml").write_text(written.to_toml())
    assert RunConfig.from_sources(tmp_path / "run.toml").conditional is True
    (tmp_path / "bad.toml").write_text('conditional = "yes"\n')
    with pytest.raises(GankitError, match="conditional must be bool"):
        RunConfig.from_sources(tmp_path / "bad.toml")


class UnpairedItems(Items):
    def __getitem__(self, index):
        return self.points[index]


class OutOfRangeItems(Items):
    def __getitem__(self, index):
        return self.points[index], CLASSES


@pytest.mark.parametrize("source, expected", [
    (UnpairedItems, "its items are not (example, label) pairs"),
    (OutOfRangeItems, "must be in [0, 3)"),
])
def test_bad_item_labels_are_refused_at_their_batch(source, expected):
    stream = BatchStream(source(), 6, seed=0, device=torch.device("cpu"), num_classes=CLASSES)
    with pytest.raises(GankitError) as raised:
        stream.next_with_labels()
    assert expected in str(raised.value)


class StringOutputsLoss(ClassifyingLoss):
    discriminator_outputs = "class_logits"


def scores_only(*, shape, z_dim, num_classes: int = 0, discriminator_outputs: tuple = ()):
    return conditional(shape=shape, z_dim=z_dim, num_classes=num_classes)


class WrongOutputDiscriminator(Discriminator):
    def forward(self, x, labels):
        return super().forward(x, labels), {"features": x}


def wrong_output(*, shape, z_dim, num_classes: int = 0, discriminator_outputs: tuple = ()):
    generator, _ = conditional(shape=shape, z_dim=z_dim, num_classes=num_classes)
    return generator, WrongOutputDiscriminator(shape, num_classes, ())


def always_outputs(*, shape, z_dim, num_classes: int = 0, discriminator_outputs: tuple = ()):
    return conditional(shape=shape, z_dim=z_dim, num_classes=num_classes, discriminator_outputs=("class_logits",))


class MoreArchitectures:
    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("scores-only", scores_only)
        register("wrong-output", wrong_output)
        register("always-outputs", always_outputs)

    @gankit.hookimpl
    def gankit_register_losses(self, register):
        register("string-outputs", StringOutputsLoss)


@pytest.mark.parametrize("arch, loss, expected", [
    ("condtest:cond", "more:string-outputs", "discriminator_outputs must be a tuple of names"),
    ("more:scores-only", "condtest:classifying", "the discriminator must return (scores, {name: tensor})"),
    ("more:wrong-output", "condtest:classifying", "the discriminator returned no class_logits output"),
    ("more:always-outputs", "bce", "must return one raw score per example (shape (N,)), got tuple"),
])
def test_a_discriminator_without_the_outputs_a_loss_needs_is_refused(arch, loss, expected):
    plugins = load_plugins([("condtest", Plugin()), ("more", MoreArchitectures())], entry_points=False)
    with pytest.raises(GankitError) as raised:
        Trainer(config(arch=arch, loss=loss), registry=Registry(plugins))
    assert expected in str(raised.value)


def test_damaged_class_metadata_is_refused(tmp_path):
    from gankit.checkpoint import DamagedCheckpoint, check_metadata

    for damaged in ({"num_classes": 1}, {"num_classes": "3"}, {"class_names": "abc"},
                    {"num_classes": 3, "class_names": ["a", "b"]}):
        with pytest.raises(DamagedCheckpoint):
            check_metadata(tmp_path / "x.safetensors", {"step": 1, **damaged})


def test_resume_cannot_switch_a_run_to_conditional(cli_plugins, tmp_path):
    Trainer(config(conditional=False, arch="condtest:plain", steps=1), registry=registry()).train(tmp_path / "run")
    result = runner.invoke(app, ["run", "--resume", str(tmp_path / "run"), "--conditional", "--steps", "2"])
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "--conditional cannot be changed" in lines[0], result.output
