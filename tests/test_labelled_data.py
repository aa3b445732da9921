"""Class labels of the builtin data sources (issue 14): which sources are labelled, their class names, and
``labels()`` aligned with ``tensor()``; ``folder:classes=subfolders`` and its errors; unlabelled sources unchanged."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gankit.builtins.anime import AnimeFaces
from gankit.builtins.digits import DigitsDataSource
from gankit.builtins.folder import FolderImages
from gankit.builtins.toy2d import grid, ring
from gankit.builtins.torchvision_data import CIFAR_FILES
from gankit.cli import app
from gankit.errors import GankitError
from gankit.images import files_fingerprint, scan_images
from gankit.registry import default_registry
from image_folders import write_image
from test_torchvision_data import fake_mnist, write_idx

runner = CliRunner()
COLOURS = {"ant": (200, 0, 0), "Bee": (0, 200, 0), "cat": (0, 0, 200)}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))


def build(spec: str, root: Path, image_size=None):
    return default_registry().build("data", spec, root=str(root), image_size=image_size, seed=0).value


def class_tree(root: Path, per_class: int = 2) -> Path:
    """One solid colour per class folder, so a pixel tells an image's class."""
    for name, colour in COLOURS.items():
        for index in range(per_class):
            write_image(root / name / f"{index}.png", color=colour)
    return root


def write_text(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("not an image")


def assert_one_error_line(result, *fragments):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- digits ---------------------------------------------------------------------------------------------


def test_digits_labels_are_the_drawn_digits():
    source = DigitsDataSource(count=400)
    assert source.num_classes == 10 and source.class_names == tuple("0123456789")
    labels = source.labels()
    assert labels.dtype == torch.int64 and labels.shape == (400,) and set(labels.tolist()) == set(range(10))
    # Aligned with tensor(): class means of the first 300 images classify the other 100 far above chance
    # (0.74 measured; a labelling shifted by one image scores 0.13).
    pixels = source.tensor().float().flatten(1)
    means = torch.stack([pixels[:300][labels[:300] == digit].mean(0) for digit in range(10)])
    accuracy = (torch.cdist(pixels[300:], means).argmin(1) == labels[300:]).float().mean().item()
    assert accuracy > 0.5
    image, label = source[7]
    assert label == int(labels[7]) and torch.equal(image, source.tensor()[7].float() / 127.5 - 1)


# --- ring and grid --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, modes", [(ring, 8), (grid, 25)])
def test_toy_labels_are_the_mode_each_point_was_drawn_from(make, modes):
    data = make(count=2000, dataset_seed=3)
    assert data.num_classes == modes and data.class_names == tuple(f"mode {i}" for i in range(modes))
    labels = data.labels()
    assert labels.dtype == torch.int64 and labels.shape == (2000,)
    nearest = torch.cdist(data.tensor(), data.modes).argmin(1)
    assert torch.equal(nearest, labels)
    point, label = data[5]
    assert torch.equal(point, data.tensor()[5]) and label == int(labels[5])


# --- mnist, fashion-mnist, cifar10 ----------------------------------------------------------------------


def test_mnist_labels_come_from_the_label_files_in_split_order(tmp_path):
    from torchvision import datasets

    fake_mnist(tmp_path, train=5, test=3)  # labels 0..4, then 0..2
    source = build("mnist:split=all", tmp_path)
    assert source.num_classes == 10 and source.class_names == tuple(datasets.MNIST.classes)
    assert source.labels().tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert source.labels().dtype == torch.int64 and len(source.labels()) == len(source.tensor())
    assert build("mnist:split=test", tmp_path, image_size=16).labels().tolist() == [0, 1, 2]
    assert source[6][1] == 1
    fake_mnist(tmp_path, folder="FashionMNIST")
    fashion = build("fashion-mnist", tmp_path)
    assert fashion.class_names == tuple(datasets.FashionMNIST.classes) and fashion.class_names[9] == "Ankle boot"


def test_damaged_mnist_labels_fail_only_when_asked_for(tmp_path):
    fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-labels-idx1-ubyte", np.array([1, 2, 255, 3, 4]))
    source = build("mnist", tmp_path)
    assert tuple(source.tensor().shape) == (5, 1, 32, 32)  # an unconditional run reads no label, as before
    with pytest.raises(GankitError, match="label 255, outside the 10 classes") as raised:
        source.labels()
    assert "\n" not in str(raised.value)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([1, 2, 3]))
    with pytest.raises(GankitError, match="3 labels for 5 images"):
        build("mnist", tmp_path).labels()


def fake_labelled_cifar(root: Path, names=tuple(f"name{i}" for i in range(10))) -> np.ndarray:
    """CIFAR-10 pickles whose label of each image is its row number mod 10, written into the image's first byte."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = np.zeros((12, 3072), dtype=np.uint8)
    labels = np.arange(12) % 10
    rows[:, 0] = labels * 20
    for index, name in enumerate(CIFAR_FILES[:6]):
        batch = {"data": rows[index * 2 : index * 2 + 2], "labels": labels[index * 2 : index * 2 + 2].tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(names)}))
    return labels


def test_cifar10_labels_and_names_come_from_its_files(tmp_path):
    fake_labelled_cifar(tmp_path)
    for spec, size in (("cifar10", None), ("cifar10:split=all", 32), ("cifar10:split=test", None)):
        source = build(spec, tmp_path, image_size=size)
        assert source.class_names == tuple(f"name{i}" for i in range(10))
        assert torch.equal(source.labels(), source.tensor()[:, 0, 0, 0].long() // 20)
    assert build("cifar10:split=all", tmp_path).labels().tolist() == [*range(10), 0, 1]


def test_cifar10_with_a_short_class_list_still_trains_unconditionally(tmp_path):
    fake_labelled_cifar(tmp_path, names=("a", "b"))
    source = build("cifar10", tmp_path)
    assert len(source.tensor()) == 10
    with pytest.raises(GankitError, match=r"do not list 10 class names \(found 2\)"):
        source.labels()


def test_cifar10_labels_that_are_not_class_numbers_are_refused_not_rounded(tmp_path):
    fake_labelled_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    content = pickle.loads(batch.read_bytes())
    batch.write_bytes(pickle.dumps({**content, "labels": [0.5, 1.5]}))
    with pytest.raises(GankitError, match="not class numbers"):
        build("cifar10", tmp_path).labels()


# --- folder ---------------------------------------------------------------------------------------------


def test_folder_subfolders_are_classes_sorted_by_name(tmp_path):
    root = class_tree(tmp_path / "tree")
    write_image(root / "cat" / "deeper" / "x.png", color=COLOURS["cat"])  # nested: still class cat
    source = FolderImages(root=str(root), image_size=4, classes="subfolders")
    assert source.class_names == ("Bee", "ant", "cat") and source.num_classes == 3  # sorted(), as ImageFolder
    labels = source.labels()
    # The images keep the order of the unlabelled folder (natural, case-blind: ant before Bee).
    assert source.names[:2] == ["ant/0.png", "ant/1.png"]
    assert labels.dtype == torch.int64 and labels.tolist() == [1, 1, 0, 0, 2, 2, 2]
    colours = [tuple(source.tensor()[i, :, 2, 2].tolist()) for i in range(len(source))]
    assert colours == [COLOURS[source.class_names[label]] for label in labels.tolist()]
    image, label = source[3]
    assert label == 0 and image.shape == (3, 4, 4)


def test_folder_labels_survive_the_image_cache(tmp_path):
    root = class_tree(tmp_path / "tree")
    unlabelled = FolderImages(root=str(root), image_size=4)  # builds the cache the labelled source then reads
    assert unlabelled.built_cache
    labelled = FolderImages(root=str(root), image_size=4, classes="subfolders")
    assert not labelled.built_cache and labelled.cache_path == unlabelled.cache_path
    assert labelled.labels().tolist() == [1, 1, 0, 0, 2, 2]
    assert torch.equal(labelled.tensor(), unlabelled.tensor())


def test_folder_fingerprint_changes_when_a_file_moves_between_classes(tmp_path):
    root = class_tree(tmp_path / "tree")
    before = FolderImages(root=str(root), image_size=4, classes="subfolders")
    (root / "Bee" / "1.png").rename(root / "cat" / "2.png")  # same file, same count: only its class changes
    moved = FolderImages(root=str(root), image_size=4, classes="subfolders")
    assert moved.labels().tolist() == [1, 1, 0, 2, 2, 2]
    assert moved.fingerprint() != before.fingerprint()


def test_folder_without_classes_is_unchanged_and_unlabelled(tmp_path):
    root = class_tree(tmp_path / "tree")
    write_image(root / "loose.png")  # fine without classes
    source = FolderImages(root=str(root), image_size=4)
    assert source.num_classes is None and source.class_names is None and source.labels() is None
    assert isinstance(source[0], torch.Tensor)
    assert source.fingerprint() == files_fingerprint(scan_images(root)[0])
    assert FolderImages(root=str(root), image_size=4, classes="none").labels() is None


def test_anime_stays_unlabelled(tmp_path):
    write_image(tmp_path / "faces" / "1.jpg")
    source = AnimeFaces(root=str(tmp_path / "faces"), image_size=8)
    assert source.num_classes is None and source.labels() is None


@pytest.mark.parametrize(
    "prepare, fragments",
    [
        (lambda root: write_image(root / "stray.png"), ("'stray.png' lies directly in", "class folder")),
        (lambda root: (root / "empty").mkdir(), ("class folder 'empty'", "holds no images")),
        (lambda root: write_text(root / "only-text" / "notes.txt"),
         ("class folder 'only-text'", "holds no images")),
        (lambda root: [(root / "cat" / name).write_bytes(b"broken") for name in ("0.png", "1.png")],
         ("class 'cat' has no usable image",)),
    ],
    ids=["image-in-root", "empty-class", "class-without-images", "class-of-broken-images"],
)
def test_folder_class_layout_errors_name_the_culprit(tmp_path, prepare, fragments):
    root = class_tree(tmp_path / "tree")
    prepare(root)
    with pytest.raises(GankitError) as raised:
        FolderImages(root=str(root), image_size=4, classes="subfolders")
    message = str(raised.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message


def test_a_class_folder_linked_to_another_says_why_it_is_empty(tmp_path):
    root = class_tree(tmp_path / "tree")
    (root / "link").symlink_to(root / "ant", target_is_directory=True)
    with pytest.raises(GankitError, match=r"class folder '(ant|link)' .* holds no images \(symlink to a folder already searched"):
        FolderImages(root=str(root), image_size=4, classes="subfolders")


def test_folder_classes_need_two_class_folders(tmp_path):
    write_image(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(GankitError, match="at least 2 class folders .* found only 'only'"):
        FolderImages(root=str(tmp_path / "one"), image_size=4, classes="subfolders")
    write_image(tmp_path / "one" / ".hidden" / "b.png")  # hidden folders are not classes (nor scanned)
    with pytest.raises(GankitError, match="found only 'only'"):
        FolderImages(root=str(tmp_path / "one"), image_size=4, classes="subfolders")


def test_folder_limit_that_leaves_a_class_empty_says_so(tmp_path):
    root = class_tree(tmp_path / "tree")
    assert FolderImages(root=str(root), image_size=4, classes="subfolders", limit=5).labels().tolist() == [1, 1, 0, 0, 2]
    with pytest.raises(GankitError, match="class folder 'cat' .* holds no images among the first 4"):
        FolderImages(root=str(root), image_size=4, classes="subfolders", limit=4)


def test_a_holdout_that_takes_a_whole_class_says_so(tmp_path):
    root = class_tree(tmp_path / "tree")
    # Natural file order puts 'cat' last: holding out its images leaves the class with none to train on.
    assert FolderImages(root=str(root), image_size=4, classes="subfolders", holdout=1).labels().tolist() == [1, 1, 0, 0, 2]
    with pytest.raises(GankitError, match="class folder 'cat' .* holds no images outside the last 2 \\(holdout\\)"):
        FolderImages(root=str(root), image_size=4, classes="subfolders", holdout=2)


def test_folder_classes_option_errors_through_the_cli(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "run"
    common = ["run", "--data-root", str(root), "--out", str(out), "--steps", "1", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, [*common, "--data", "folder:classes=bogus"])
    assert_one_error_line(result, "classes must be subfolders", "'bogus'")
    write_image(root / "stray.png")
    result = runner.invoke(app, [*common, "--data", "folder:classes=subfolders"])
    assert_one_error_line(result, "'stray.png' lies directly in")
    assert not (out / "checkpoints").exists()


def test_a_labelled_folder_trains_unconditionally(tmp_path):
    root = class_tree(tmp_path / "tree")
    result = runner.invoke(app, [
        "run", "--data", "folder:classes=subfolders", "--data-root", str(root), "--out", str(tmp_path / "run"),
        "--image-size", "16", "--arch", "dcgan:width=8", "--batch-size", "4", "--z-dim", "8", "--steps", "1",
        "--device", "cpu", "--quiet",
    ])
    assert result.exit_code == 0, result.output
