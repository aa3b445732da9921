"""Sampling and evaluating checkpoints of conditional runs (issue 14): `gankit sample --class`, the labels
file, `gankit.sample(classes=)`, and the conditional metric values (`class_consistency`, `mode_accuracy`)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit.inference import sample_noise
from conditional_checkpoints import install, invoke, one_line_error, toy_generator, toy_state, write_checkpoint


SHAPE = (1, 8, 8)
Z_DIM = 4
NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def plugin(install_entry_points):
    install(install_entry_points)


@pytest.fixture
def state():
    return toy_state(SHAPE, Z_DIM, len(NAMES))


@pytest.fixture
def conditional(plugin, state, tmp_path):
    return write_checkpoint(tmp_path / "cond.safetensors", "cond-toy", state, shape=SHAPE, z_dim=Z_DIM,
                            num_classes=len(NAMES), class_names=NAMES)


def grid_size(rows: int, columns: int, side: int = 8) -> tuple[int, int]:
    # torchvision's grid: 2 px of padding around and between the images.
    return columns * (side + 2) + 2, rows * (side + 2) + 2


# --- gankit sample --class ---------------------------------------------------------------------------


def test_a_grid_has_one_row_per_class_and_n_columns(conditional, tmp_path):
    result = invoke("sample", conditional, "--class", "0,2", "-n", "5", "--out", tmp_path / "two.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "two.png").size == grid_size(rows=2, columns=5)
    assert invoke("sample", conditional, "-n", "4", "--out", tmp_path / "all.png").exit_code == 0
    assert Image.open(tmp_path / "all.png").size == grid_size(rows=3, columns=4)
    # Without -n: 8 per class, as the training grid of a conditional run.
    assert invoke("sample", conditional, "--class", "1", "--out", tmp_path / "one.png").exit_code == 0
    assert Image.open(tmp_path / "one.png").size == grid_size(rows=1, columns=8)


def test_npy_samples_come_with_their_labels_and_are_the_generator_of_that_class(conditional, state, tmp_path):
    result = invoke("sample", conditional, "--class", "2,0", "-n", "3", "--seed", "7", "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    samples, labels = np.load(tmp_path / "s.npy"), np.load(tmp_path / "s.labels.npy")
    assert labels.dtype == np.int64 and labels.tolist() == [2, 2, 2, 0, 0, 0]
    # Every class gets the same noise, that of `gankit sample -n 3 --seed 7`.
    noise = sample_noise(3, Z_DIM, seed=7).repeat(2, 1)
    expected = toy_generator(state, SHAPE)(noise, torch.tensor(labels))
    np.testing.assert_allclose(samples, expected.numpy(), atol=1e-6)


def test_a_class_by_name_is_the_class_by_index(conditional, tmp_path):
    assert invoke("sample", conditional, "--class", "bird,cat", "-n", "2", "--out", tmp_path / "n.npy").exit_code == 0
    assert invoke("sample", conditional, "--class", "2,0", "-n", "2", "--out", tmp_path / "i.npy").exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "n.npy"), np.load(tmp_path / "i.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "n.labels.npy"), [2, 2, 0, 0])


def test_names_win_over_indices_so_every_class_stays_reachable(plugin, tmp_path):
    # Subfolder classes sorted by name: "1", "10", "2". "--class 1" is the class named "1", index 0.
    path = write_checkpoint(tmp_path / "c.safetensors", "cond-toy", toy_state(SHAPE, Z_DIM, 3), shape=SHAPE,
                            z_dim=Z_DIM, num_classes=3, class_names=["1", "10", "2"])
    assert invoke("sample", path, "--class", "1,2,10", "-n", "1", "--out", tmp_path / "s.npy").exit_code == 0
    assert np.load(tmp_path / "s.labels.npy").tolist() == [0, 2, 1]


def test_the_python_api_samples_per_class(conditional):
    both = gankit.sample(conditional, 2, classes=["dog", 2], seed=3)
    assert both.shape == (4, *SHAPE)
    # The same noise for every class (rounding may differ with the batch's size).
    torch.testing.assert_close(both[2:], gankit.sample(conditional, 2, classes="2", seed=3))
    assert gankit.sample(conditional, 2).shape == (6, *SHAPE)  # every class


def test_an_unconditional_checkpoint_samples_as_before(plugin, tmp_path):
    path = write_checkpoint(tmp_path / "plain.safetensors", "cond-toy", toy_state(SHAPE, Z_DIM, None),
                            shape=SHAPE, z_dim=Z_DIM)
    assert invoke("sample", path, "-n", "4", "--out", tmp_path / "s.npy").exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (4, *SHAPE)
    assert not (tmp_path / "s.labels.npy").exists()
    assert "--class" in one_line_error(invoke("sample", path, "--class", "0", "--out", tmp_path / "c.png"))
    with pytest.raises(gankit.GankitError, match="no classes"):
        gankit.sample(path, 2, classes=[0])


@pytest.mark.parametrize(
    "classes, message",
    [
        ("cow", "unknown class 'cow'"),
        ("3", "unknown class '3': give an index 0 to 2"),
        ("-1", "unknown class '-1'"),
        ("", "unknown class ''"),
        ("0,,1", "unknown class ''"),
        ("dog,1", "given twice"),
        ("x" * 5000, "characters"),
    ],
)
def test_a_bad_class_is_one_line_and_writes_nothing(conditional, tmp_path, classes, message):
    line = one_line_error(invoke("sample", conditional, "--class", classes, "--out", tmp_path / "s.npy"))
    assert message in line and len(line) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cond.safetensors", "plugin-src"]


def test_an_existing_labels_file_is_refused_before_the_checkpoint_is_read(tmp_path):
    (tmp_path / "s.labels.npy").write_bytes(b"mine")
    line = one_line_error(invoke("sample", tmp_path / "missing.safetensors", "--out", tmp_path / "s.npy"))
    assert "s.labels.npy already exists" in line and "--overwrite" in line
    assert (tmp_path / "s.labels.npy").read_bytes() == b"mine" and not (tmp_path / "s.npy").exists()
    (tmp_path / "t.labels.npy").mkdir()
    line = one_line_error(invoke("sample", tmp_path / "missing.safetensors", "--out", tmp_path / "t.npy", "--overwrite"))
    assert "t.labels.npy is a folder" in line and not (tmp_path / "t.npy").exists()


def test_overwrite_replaces_the_samples_and_their_labels(conditional, tmp_path):
    out = tmp_path / "s.npy"
    assert invoke("sample", conditional, "--class", "0", "-n", "2", "--out", out).exit_code == 0
    assert invoke("sample", conditional, "--class", "1", "-n", "3", "--out", out, "--overwrite").exit_code == 0
    assert np.load(tmp_path / "s.labels.npy").tolist() == [1, 1, 1] and len(np.load(out)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cond.safetensors", "plugin-src", "s.labels.npy", "s.npy"]


def test_a_conditional_checkpoint_of_an_architecture_that_cannot_condition_is_one_line(plugin, tmp_path):
    path = write_checkpoint(tmp_path / "c.safetensors", "plain-toy", toy_state(SHAPE, Z_DIM, None), shape=SHAPE,
                            z_dim=Z_DIM, num_classes=3)
    line = one_line_error(invoke("sample", path, "--out", tmp_path / "s.png"))
    assert "conditional run (3 classes)" in line and "condtoy:plain-toy" in line and "num_classes" in line


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"num_classes": 3, "class_names": ["a", "b"]}, "class_names must be num_classes distinct names"),
        ({"num_classes": 3, "class_names": ["a", "a", "b"]}, "class_names must be num_classes distinct names"),
        ({"num_classes": 3, "class_names": "abc"}, "class_names must be a list of strings"),
        ({"num_classes": 1}, "num_classes must be an integer of at least 2"),
        ({"num_classes": "3"}, "num_classes must be an integer of at least 2"),
        ({"num_classes": 4}, "does not match the architecture: embedding.weight"),
    ],
)
def test_damaged_class_metadata_is_one_line(plugin, state, tmp_path, metadata, message):
    path = write_checkpoint(tmp_path / "c.safetensors", "cond-toy", state, shape=SHAPE, z_dim=Z_DIM, **metadata)
    assert message in one_line_error(invoke("sample", path, "--out", tmp_path / "s.png"))
    assert not (tmp_path / "s.png").exists()


def test_two_d_samples_of_classes_are_a_scatter_and_labelled_points(plugin, tmp_path):
    table = {"table": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    path = write_checkpoint(tmp_path / "p.safetensors", "lookup", table, shape=(2,), z_dim=2, num_classes=2)
    assert invoke("sample", path, "-n", "3", "--out", tmp_path / "p.png").exit_code == 0
    assert Image.open(tmp_path / "p.png").size == (400, 400)
    assert invoke("sample", path, "-n", "3", "--out", tmp_path / "p.npy").exit_code == 0
    assert np.load(tmp_path / "p.npy").tolist() == [[0.0, 1.0]] * 3 + [[1.0, 0.0]] * 3


# --- metrics of conditional generators ---------------------------------------------------------------


DIGITS_METRIC = "digits:train_count=3000,epochs=1"


def digits_the_classifier_recognises(shift: int) -> torch.Tensor:
    """(10, 1, 32, 32): row k a rendered digit (k + shift) % 10 that the metric's classifier labels so."""
    from gankit.builtins.metrics import load_digit_classifier
    from gankit.builtins.rendered_digits import load_digits

    images, labels = load_digits(500, seed=3, image_size=32)
    images = torch.from_numpy(images).float() / 127.5 - 1.0
    classifier = load_digit_classifier(32, train_count=3000, epochs=1)
    with torch.no_grad():
        predicted = classifier(images).argmax(dim=1)
    recognised = predicted == torch.from_numpy(labels)
    rows = []
    for digit in range(10):
        wanted = (digit + shift) % 10
        candidates = torch.nonzero(recognised & (predicted == wanted)).flatten()
        assert len(candidates), f"the classifier recognises no rendered {wanted}"
        rows.append(images[candidates[0]])
    return torch.stack(rows)


@pytest.mark.parametrize("shift, consistency", [(0, 1.0), (1, 0.0)])
def test_class_consistency_is_the_share_of_samples_classified_as_asked(plugin, tmp_path, shift, consistency):
    table = {"table": digits_the_classifier_recognises(shift)}
    path = write_checkpoint(tmp_path / "d.safetensors", "lookup", table, shape=(1, 32, 32), z_dim=2, num_classes=10,
                            class_names=[str(d) for d in range(10)])
    result = invoke("eval", path, "--metric", DIGITS_METRIC, "-n", "50", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["class_consistency"] == consistency
    assert values["classes"] == 10  # balanced labels: each digit is asked for 5 times


def test_an_unconditional_digits_score_has_no_class_consistency(plugin, tmp_path):
    path = write_checkpoint(tmp_path / "u.safetensors", "plain-toy", toy_state((1, 32, 32), Z_DIM, None),
                            shape=(1, 32, 32), z_dim=Z_DIM)
    result = invoke("eval", path, "--metric", DIGITS_METRIC, "-n", "20", "--json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["values"]) == {"classes", "kl", "confidence", "score"}


def test_mode_accuracy_counts_samples_on_the_mode_asked_for(plugin, tmp_path):
    from gankit.builtins.toy2d import ring_modes

    points = ring_modes().clone()
    points[2] = points[3]  # asked for mode 2, lands on mode 3: high quality, but not what was asked
    points[5] = torch.tensor([5.0, 5.0])  # far from every mode
    path = write_checkpoint(tmp_path / "r.safetensors", "lookup", {"table": points}, shape=(2,), z_dim=2,
                            num_classes=8, data="ring:count=512")
    result = invoke("eval", path, "--metric", "modes", "-n", "80", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)["values"]
    assert values["mode_accuracy"] == 6 / 8
    assert values["worst_mode_coverage"] == 0.0
    assert values["modes"] == 6 and values["hq"] == 7 / 8  # the unconditional values, as before


def test_a_metric_without_labels_scores_a_conditional_generator_unchanged(plugin, tmp_path):
    from gankit.builtins.metrics import ModeCoverage, mode_statistics
    from gankit.builtins.toy2d import ring, ring_modes
    from gankit.evaluation import score

    class OldModes(ModeCoverage):  # a plugin's metric written before conditional runs
        def evaluate(self, samples, *, data):
            return mode_statistics(samples, torch.as_tensor(data.modes), float(data.mode_std))

    from gankit.registry import default_registry

    generator, _ = default_registry().build(
        "architecture", "condtoy:lookup", shape=(2,), z_dim=2, num_classes=8).value
    generator.table.copy_(ring_modes())
    values = score(OldModes(), generator, 2, data=ring(count=64), count=16, num_classes=8)
    assert values == {"modes": 8.0, "hq": 1.0, "kl": 0.0}


def test_evaluation_during_a_conditional_run_scores_balanced_labels(plugin, tmp_path):
    from gankit.builtins.toy2d import ring, ring_modes
    from gankit.evaluation import TrainingEvaluator, build_metric
    from gankit.registry import default_registry

    registry = default_registry()
    data = ring(count=64)
    generator, _ = registry.build("architecture", "condtoy:lookup", shape=(2,), z_dim=2, num_classes=8).value
    points = ring_modes().clone()
    points[7] = torch.tensor([9.0, 9.0])
    generator.table.copy_(points)
    metric = build_metric(registry, "modes", shape=(2,), data=data)
    evaluator = TrainingEvaluator(metric, count=40, seed=0, data=data, z_dim=2, device="cpu", num_classes=8)
    event = evaluator.evaluate(generator, step=3, out=tmp_path)
    assert event.values["mode_accuracy"] == 7 / 8 and event.values["worst_mode_coverage"] == 0.0
    logged = json.loads((tmp_path / "eval.jsonl").read_text())
    assert logged["step"] == 3 and logged["mode_accuracy"] == 7 / 8
