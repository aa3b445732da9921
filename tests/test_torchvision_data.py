"""The torchvision data sources read tiny fake files in torchvision's own formats and layouts; nothing is
downloaded, nothing in the root is written, and a missing root says in one line what goes where."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit.builtins.torchvision_data import CIFAR_FILES, MNIST_FILES
from gankit.errors import GankitError
from gankit.registry import default_registry
from image_folders import fingerprint, write_image, write_noise


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))


def build(spec: str, root: Path, image_size=None):
    return default_registry().build("data", spec, root=str(root), image_size=image_size, seed=0).value


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file: magic (0, 0, type 0x08 = ubyte, dimensions), big-endian sizes, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder="MNIST", train=5, test=3) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, (train + test, 28, 28), dtype=np.uint8)  # no zeros: padding is visible
    raw = root / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images[:train])
    write_idx(raw / "train-labels-idx1-ubyte", np.arange(train) % 10)
    write_idx(raw / "t10k-images-idx3-ubyte", images[train:])
    write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(test) % 10)
    return images


def fake_cifar(root: Path, per_batch=2) -> np.ndarray:
    """CIFAR-10's python pickles: ``data`` rows of 3072 bytes (R plane, G plane, B plane) and ``labels``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (6 * per_batch, 3072), dtype=np.uint8)
    for index, name in enumerate(CIFAR_FILES[:6]):
        batch = {"data": rows[index * per_batch : (index + 1) * per_batch], "labels": [0] * per_batch}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    return rows.reshape(-1, 3, 32, 32)


def test_mnist_default_is_32_pixels_padded(tmp_path):
    images = fake_mnist(tmp_path)
    before = fingerprint(tmp_path)
    source = build("mnist", tmp_path)
    data = source.tensor()
    assert source.shape == (1, 32, 32) and tuple(data.shape) == (5, 1, 32, 32) and data.dtype == torch.uint8
    assert torch.equal(data[:, 0, 2:30, 2:30], torch.from_numpy(images[:5]))
    assert int(data[:, :, :2].max()) == 0 and int(data[:, :, :, 30:].max()) == 0
    assert fingerprint(tmp_path) == before


def test_mnist_native_and_other_sizes_and_splits(tmp_path):
    images = fake_mnist(tmp_path)
    assert torch.equal(build("mnist", tmp_path, image_size=28).tensor()[:, 0], torch.from_numpy(images[:5]))
    assert tuple(build("mnist", tmp_path, image_size=64).tensor().shape) == (5, 1, 64, 64)
    assert len(build("mnist:split=test", tmp_path)) == 3
    assert len(build("mnist:split=all", tmp_path)) == 8
    with pytest.raises(GankitError, match="split must be one of"):
        build("mnist:split=nope", tmp_path)


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    fake_mnist(tmp_path, folder="FashionMNIST", train=4)
    assert tuple(build("fashion-mnist", tmp_path).tensor().shape) == (4, 1, 32, 32)
    with pytest.raises(GankitError, match="MNIST/raw"):
        build("mnist", tmp_path)


def test_missing_mnist_says_which_files_go_where(tmp_path):
    with pytest.raises(GankitError) as raised:
        build("mnist", tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path / "MNIST" / "raw") in message and "nothing is downloaded" in message
    assert all(name in message for name in MNIST_FILES)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(GankitError, match="gunzip"):
        build("mnist", tmp_path)


def test_damaged_mnist_is_one_line_error(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(GankitError, match="could not be read"):
        build("mnist", tmp_path)


def test_cifar10_from_the_python_pickles(tmp_path):
    images = fake_cifar(tmp_path)
    before = fingerprint(tmp_path)
    source = build("cifar10", tmp_path)
    assert source.shape == (3, 32, 32)
    assert torch.equal(source.tensor(), torch.from_numpy(images[:10]))
    assert torch.equal(build("cifar10:split=test", tmp_path).tensor(), torch.from_numpy(images[10:]))
    assert tuple(build("cifar10", tmp_path, image_size=16).tensor().shape) == (10, 3, 16, 16)
    assert fingerprint(tmp_path) == before


def test_missing_cifar10_says_which_files_go_where(tmp_path):
    with pytest.raises(GankitError) as raised:
        build("cifar10", tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path / "cifar-10-batches-py") in message
    assert all(name in message for name in CIFAR_FILES)


def fake_celeba(root: Path, count=6) -> Path:
    images = root / "celeba" / "img_align_celeba"
    for index in range(1, count + 1):
        write_noise(images / f"{index:06d}.jpg", size=(178, 218), seed=index)
    lines = [f"{index:06d}.jpg {0 if index <= 3 else (1 if index <= 5 else 2)}" for index in range(1, count + 1)]
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return images


def test_celeba_aligned_faces_through_the_image_cache(tmp_path):
    root = tmp_path / "data"
    fake_celeba(root)
    before = fingerprint(root)
    source = build("celeba", root)
    assert source.shape == (3, 64, 64) and len(source) == 6 and source.built_cache
    assert source.names[0] == "000001.jpg"
    assert build("celeba:split=train", root).names == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert build("celeba:split=test", root).names == ["000006.jpg"]
    assert not build("celeba", root).built_cache
    assert fingerprint(root) == before


def test_celeba_split_needs_the_partition_file(tmp_path):
    fake_celeba(tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    assert len(build("celeba", tmp_path, image_size=16)) == 6
    with pytest.raises(GankitError, match="list_eval_partition.txt"):
        build("celeba:split=valid", tmp_path)


def test_missing_celeba_says_what_goes_where(tmp_path):
    write_image(tmp_path / "000001.jpg")
    with pytest.raises(GankitError) as raised:
        build("celeba", tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path / "celeba" / "img_align_celeba") in message
