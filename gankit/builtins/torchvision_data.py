"""Data sources for the torchvision datasets ``mnist``, ``fashion-mnist``, ``cifar10`` and ``celeba``, read from
files already on disk: nothing is ever downloaded (``download=False``), a missing root says what goes where.

MNIST, Fashion-MNIST and CIFAR-10 are read by torchvision into one uint8 array (fast path, no decoding).
CelebA's JPEGs go through :mod:`gankit.images`: decoded once into the image cache, broken files skipped.
"""
from __future__ import annotations

from pathlib import Path

import gankit
from gankit.images import ImageFiles, natural_key, scan_images
from gankit.components import DataSource
from gankit.errors import GankitError

DEFAULT_ROOT = "data"
SPLITS = ("train", "test", "all")
CELEBA_SPLITS = ("train", "valid", "test", "all")
MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")


def _check_split(label: str, split: str, allowed) -> str:
    if split not in allowed:
        raise GankitError(f"{label}: split must be one of {', '.join(allowed)}, got {split!r}")
    return split


def resize_images(images, size: int):
    """uint8 ``(N, C, H, W)`` to ``(N, C, size, size)`` (bilinear, antialiased when shrinking), in chunks."""
    import torch
    from torch.nn import functional

    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    chunks = []
    for chunk in images.split(4096):
        resized = functional.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=size < chunk.shape[-1]
        )
        chunks.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks)


class ArrayImages(DataSource):
    """A labelled dataset already held as one uint8 tensor ``(N, C, S, S)`` and its class of each image."""

    num_classes = 10  # MNIST, Fashion-MNIST and CIFAR-10 alike

    def _set(self, images, targets, class_names, *, files) -> None:
        self.images = images.contiguous()
        self.shape = tuple(int(s) for s in self.images.shape[1:])
        self.image_size = self.shape[-1]
        self.class_names = None
        self._labels = None
        if not isinstance(class_names, (list, tuple)) or len(class_names) != self.num_classes:
            found = len(class_names) if isinstance(class_names, (list, tuple)) else f"a {type(class_names).__name__}"
            self._label_problem = f"{files} do not list {self.num_classes} class names (found {found})"
            return
        self.class_names = tuple(str(name) for name in class_names)
        self._labels, self._label_problem = _checked_labels(targets, len(images), self.num_classes, files)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int):
        return self.images[index].float() / 127.5 - 1.0, int(self.labels()[index])

    def tensor(self):
        return self.images

    def labels(self):
        # Raised only when labels are asked for: an unconditional run never reads them, as before labels existed.
        if self._label_problem:
            raise GankitError(self._label_problem)
        return self._labels


def _checked_labels(targets, count: int, num_classes: int, files: str):
    """``(labels int64 (N,), None)``, or ``(None, why they cannot be used)`` for targets that are not one class
    index in ``[0, num_classes)`` per image (a damaged or mismatched labels file in ``files``)."""
    import torch

    try:
        labels = torch.as_tensor(targets)
    except (TypeError, ValueError, RuntimeError) as error:
        return None, f"{files} hold labels that are not class numbers ({type(error).__name__})"
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        return None, f"{files} hold labels that are not class numbers ({labels.dtype})"
    labels = labels.long().reshape(-1)
    if labels.numel() != count:
        return None, f"{files} hold {labels.numel()} labels for {count} images"
    if count and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
        return None, f"{files} hold the label {bad}, outside the {num_classes} classes 0..{num_classes - 1}"
    return labels, None


class MNIST(ArrayImages):
    """MNIST digits, ``(1, S, S)``; ``S`` is 32 by default (the 28x28 digits padded by 2, as LeNet read them)."""

    label = "mnist"
    folder = "MNIST"

    def __init__(self, *, root: str | None = None, image_size: int | None = None, seed: int = 0, split: str = "train"):
        import torch
        from torchvision import datasets

        split = _check_split(self.label, split, SPLITS)
        base = Path(root if root is not None else DEFAULT_ROOT).expanduser()
        raw = base / self.folder / "raw"
        missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
        if missing:
            gzipped = [name for name in missing if (raw / f"{name}.gz").is_file()]
            advice = "; unpack the .gz files there (gunzip)" if gzipped else ""
            raise GankitError(
                f"{self.label} data not found: expected {', '.join(MNIST_FILES)} in {raw} "
                f"(--data-root is the folder holding {self.folder}/; nothing is downloaded){advice}"
            )
        dataset_class = getattr(datasets, self.folder)  # torchvision's class is named like its folder
        parts, targets = [], []
        try:
            for train in {"train": (True,), "test": (False,), "all": (True, False)}[split]:
                dataset = dataset_class(str(base), train=train, download=False)
                parts.append(dataset.data)
                targets.append(dataset.targets)
        except Exception as error:  # a damaged file can make torchvision raise nearly anything
            raise GankitError(f"{self.label} files in {raw} could not be read: {type(error).__name__}: {error}") from None
        images = torch.cat(parts).unsqueeze(1)
        size = 32 if image_size is None else image_size
        if size != images.shape[-1]:
            # Pad to 32 first at every size but 28, so the digits fill the same share of the frame at any size.
            images = resize_images(torch.nn.functional.pad(images, (2, 2, 2, 2)), size)
        self._set(images, torch.cat(targets), dataset_class.classes, files=f"{self.label}: the label files in {raw}")


class FashionMNIST(MNIST):
    """Fashion-MNIST clothes, ``(1, S, S)``; ``S`` is 32 by default (28x28 padded by 2)."""

    label = "fashion-mnist"
    folder = "FashionMNIST"


class CIFAR10(ArrayImages):
    """CIFAR-10 photos, ``(3, S, S)``; ``S`` is 32 (the native size) by default, others are resized."""

    def __init__(self, *, root: str | None = None, image_size: int | None = None, seed: int = 0, split: str = "train"):
        import torch
        from torchvision import datasets

        split = _check_split("cifar10", split, SPLITS)
        base = Path(root if root is not None else DEFAULT_ROOT).expanduser()
        folder = base / CIFAR_FOLDER
        if any(not (folder / name).is_file() for name in CIFAR_FILES):
            raise GankitError(
                f"cifar10 data not found: expected {', '.join(CIFAR_FILES)} in {folder} (the unpacked "
                f"cifar-10-python.tar.gz; --data-root is the folder holding {CIFAR_FOLDER}/; nothing is downloaded)"
            )
        parts, targets = [], []
        try:
            for train in {"train": (True,), "test": (False,), "all": (True, False)}[split]:
                dataset = _cifar_files_class()(str(base), train=train, download=False)
                parts.append(torch.from_numpy(dataset.data))
                targets.extend(dataset.targets)
        except Exception as error:  # a damaged pickle can raise nearly anything
            raise GankitError(f"cifar10 files in {folder} could not be read: {type(error).__name__}: {error}") from None
        images = torch.cat(parts).permute(0, 3, 1, 2)
        self._set(
            resize_images(images, 32 if image_size is None else image_size), targets, dataset.classes,
            files=f"cifar10: the files in {folder}",
        )


def _cifar_files_class():
    from torchvision import datasets

    class CIFAR10Files(datasets.CIFAR10):
        # No checksums: torchvision would compare the archive's MD5s, which makes any file it did not
        # download "corrupted"; the files are still read by torchvision, and a damaged one fails to unpickle.
        train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
        test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
        meta = {**datasets.CIFAR10.meta, "md5": None}

    return CIFAR10Files


class CelebA(ImageFiles):
    """CelebA's aligned faces (``celeba/img_align_celeba/*.jpg``, torchvision's layout), resized to ``image_size``
    (default 64) and centre-cropped, decoded once into the image cache. ``split`` other than ``all`` needs
    ``celeba/list_eval_partition.txt``."""

    def __init__(
        self,
        *,
        root: str | None = None,
        image_size: int | None = None,
        seed: int = 0,
        cache: bool = True,
        split: str = "all",
        flip: bool = False,
    ) -> None:
        split = _check_split("celeba", split, CELEBA_SPLITS)
        base = Path(root if root is not None else DEFAULT_ROOT).expanduser()
        folder = base / "celeba"
        images = folder / "img_align_celeba"
        partition = folder / "list_eval_partition.txt"
        if not images.is_dir():
            raise GankitError(
                f"celeba data not found: expected the aligned JPEGs (000001.jpg...) in {images} and, for a split "
                f"other than all, {partition} (--data-root is the folder holding celeba/; nothing is downloaded)"
            )
        files, skipped = scan_images(images)
        if split != "all":
            wanted = _partition_names(partition, CELEBA_SPLITS.index(split))
            files = [file for file in files if file.name in wanted]
            missing = sorted(wanted - {file.name for file in files}, key=natural_key)
            if missing:
                skipped = [*skipped, *((name, "listed in list_eval_partition.txt but missing") for name in missing)]
        self.load(
            images, files, skipped, label="celeba", image_size=image_size or 64, flip=flip, cache=cache, subset=split
        )


def _partition_names(path: Path, index: int) -> set[str]:
    """Image names of one split (0 train, 1 valid, 2 test) from CelebA's ``list_eval_partition.txt``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise GankitError(f"celeba: a split other than all needs {path} (name and 0/1/2 per line)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise GankitError(f"celeba: cannot read {path}: {error}") from None
    names = set()
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise GankitError(f"celeba: {path} line {number} is not 'name 0|1|2': {line.strip()[:60]!r}")
        if int(fields[1]) == index:
            names.add(fields[0])
    return names


@gankit.hookimpl
def gankit_register_data_sources(register):
    register("mnist", MNIST, description="MNIST from --data-root/MNIST/raw (never downloaded), 1x32x32")
    register(
        "fashion-mnist", FashionMNIST, description="Fashion-MNIST from --data-root/FashionMNIST/raw, 1x32x32",
        aliases=("fashionmnist",),
    )
    register("cifar10", CIFAR10, description="CIFAR-10 from --data-root/cifar-10-batches-py, 3x32x32")
    register("celeba", CelebA, description="CelebA aligned faces from --data-root/celeba/img_align_celeba, 3x64x64")
