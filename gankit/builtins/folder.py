"""The ``folder`` data source: any folder of images, searched recursively, decoded once into the image cache;
with ``classes=subfolders`` labelled by subfolder, like torchvision's ``ImageFolder``.

Built, as ``anime`` and ``celeba`` are, on what :mod:`gankit.images` offers every image source. Nothing in the
user's folder is ever written: the cache lives in the cache folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import gankit
from gankit.errors import GankitError, quoted
from gankit.images import ImageFile, ImageFiles, check_folder, image_shape, scan_images, select_files

DEFAULT_IMAGE_SIZE = 64
CLASS_LAYOUTS = ("none", "subfolders")


class FolderImages(ImageFiles):
    """Every image under ``root`` (recursively), resized and centre-cropped to ``image_size`` (default 64).

    ``classes="subfolders"``: each immediate subfolder of ``root`` is a class (classes sorted by name), and
    every image must lie in one.
    ``holdout=N`` keeps the last N files (natural name order) out of training, for metrics (``holdout_tensor``).
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        image_size: int | None = None,
        seed: int = 0,
        cache: bool = True,
        channels: int = 3,
        flip: bool = False,
        cache_dir: str | None = None,
        limit: int = 0,
        classes: str = "none",
        holdout: int = 0,
    ) -> None:
        if root is None:
            raise GankitError("the folder data source needs --data-root PATH (the folder of images)")
        if limit < 0:
            raise GankitError(f"folder: limit must be 0 (every image) or a positive count, got {limit}")
        self.planned_shape(image_size=image_size, channels=channels, classes=classes)
        folder = check_folder(root, label="folder", hint="point --data-root at a folder of images")
        files, skipped = scan_images(folder)
        class_names = subfolder_classes(folder, files, skipped) if _layout(classes) == "subfolders" else None
        files, held_out, subset = select_files(files, label="folder", limit=limit, holdout=holdout)
        if class_names is not None and (limit > 0 or holdout):
            where = f" among the first {limit} (limit)" if limit > 0 else f" outside the last {holdout} (holdout)"
            _check_every_class_has_images(folder, class_names, files, where)
        self.load(
            folder, files, skipped, label="folder", image_size=DEFAULT_IMAGE_SIZE if image_size is None else image_size, channels=channels,
            flip=flip, cache=cache, cache_dir=cache_dir, subset=subset, held_out=held_out,
        )
        if class_names is not None:
            index = {name: number for number, name in enumerate(class_names)}
            self.label_images(class_names, lambda name: index[class_folder(name)], label="folder")

    @classmethod
    def planned_shape(cls, *, image_size=None, channels: int = 3, classes: str = "none", **_) -> tuple[int, int, int]:
        _layout(classes)
        return image_shape("folder", DEFAULT_IMAGE_SIZE if image_size is None else image_size, channels)


def _layout(classes) -> str:
    if not isinstance(classes, str) or classes.lower() not in CLASS_LAYOUTS:
        raise GankitError(
            f"folder: classes must be subfolders (each subfolder of --data-root is a class) or none, got {quoted(classes)}"
        )
    return classes.lower()


def class_folder(name: str) -> str:
    """The immediate subfolder of the root that holds the image file ``name`` (relative, ``/``-separated)."""
    return name.split("/", 1)[0]


def subfolder_classes(folder: Path, files: Sequence[ImageFile], skipped: Sequence[tuple[str, str]] = ()) -> tuple[str, ...]:
    """The class names of ``folder`` laid out as torchvision's ImageFolder: its immediate subfolders (hidden ones
    ignored, as the scan ignores them), sorted by name. Refuses images outside them, an empty class folder and
    fewer than two classes, each in one line. ``skipped``: what the scan skipped, to say why a class folder is empty."""
    try:
        with os.scandir(folder) as entries:
            class_names = tuple(sorted(entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir()))
    except OSError as error:
        raise GankitError(f"folder: cannot list the class folders of {quoted(str(folder))}: {error.strerror or error}") from None
    loose = [file.name for file in files if "/" not in file.name]
    if loose:
        raise GankitError(
            f"folder: with classes=subfolders every image must lie in a class folder (a subfolder), but "
            f"{quoted(loose[0])} lies directly in {quoted(str(folder))} ({len(loose)} loose in all); move them into class folders"
        )
    if len(class_names) < 2:
        found = f"only {quoted(class_names[0])}" if class_names else "none"
        raise GankitError(
            f"folder: classes=subfolders needs at least 2 class folders (subfolders) in {quoted(str(folder))}, found {found}"
        )
    why = dict(skipped)
    _check_every_class_has_images(folder, class_names, files, "", why=why)
    return class_names


def _check_every_class_has_images(folder: Path, class_names, files: Sequence[ImageFile], among: str, why=None) -> None:
    used = {class_folder(file.name) for file in files}
    empty = [name for name in class_names if name not in used]
    if empty:
        reason = f" ({why[empty[0]]})" if why and empty[0] in why else ""
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise GankitError(
            f"folder: class folder {quoted(empty[0])} in {quoted(str(folder))} holds no images{among}{reason}{more}; "
            "add images or remove it"
        )


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "folder",
        FolderImages,
        description="Any folder of images (--data-root), recursive; options: channels (1 or 3), flip, cache_dir, limit, "
        "holdout, classes=subfolders (labelled by subfolder)",
        aliases=("images",),
    )
