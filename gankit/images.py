"""What image data sources share, as public API for plugins: finding image files, decoding one image, the
cached loading of many, the cache folder rule, and :class:`ImageFiles`, the base of the builtin image sources.

A data source for a new folder layout subclasses :class:`ImageFiles`, finds its files with
:func:`scan_images` (or builds :class:`ImageFile` entries itself) and calls :meth:`ImageFiles.load`: the
images are decoded once into the image cache (``gankit.imagecache``), broken files are skipped and counted
in one warning, and nothing in the user's folder is ever written. A source that renders or converts its
examples itself keeps them under :func:`cache_directory`, writes each file through :func:`cache_temporary`
and checks with :func:`require` that they fit in memory (docs/data.md).
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from gankit.cache import cache_directory, cache_temporary, remove_stale_temporaries
from gankit.components import DataSource
from gankit.errors import GankitError, GankitWarning, quoted
from gankit.imagecache import DecodedImages, ImageFile, UnusableImage, files_fingerprint, load_images
from gankit.memory import require
from gankit.signals import Interrupted, signal_name

__all__ = [
    # finding files
    "IMAGE_SUFFIXES", "ImageFile", "scan_images", "natural_key", "check_folder",
    # decoding one image
    "select_files", "read_image", "UnusableImage", "image_shape", "MAX_IMAGE_SIZE",
    # decoding many, once: the image cache
    "load_images", "DecodedImages", "files_fingerprint", "describe_skips", "progress_bar", "ImageFiles",
    # the cache folder rule and safe cache files, for sources that build their own
    "cache_directory", "cache_temporary", "remove_stale_temporaries", "require", "Interrupted", "signal_name",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# How many skipped files a warning names before "and N more".
NAMED_SKIPS = 3
# Below this many files a build takes about a second: no progress bar.
_PROGRESS_THRESHOLD = 500
# Bump when read_image's output changes for the same file and settings (part of the cache key).
# 2: 16-bit images scaled by their mode's range, not by their values.
DECODER_VERSION = 2
# Larger sizes are a typo (4096): even one image would be 50 MB decoded.
MAX_IMAGE_SIZE = 2048


# -- finding files ---------------------------------------------------------------------------------------


def natural_key(name: str):
    """``2.jpg`` before ``10.jpg``: numbered files (the article's ``faces/N.jpg``) keep their numeric order."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)], name


def scan_images(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> tuple[list[ImageFile], list[tuple[str, str]]]:
    """Image files under ``folder`` (recursively, following symlinks but never a loop), in natural name order,
    and ``(name, reason)`` for entries that look like images but cannot be read (broken or looping links).

    Hidden files and folders (names starting with ``.``) are ignored.
    """
    files: list[ImageFile] = []
    skipped: list[tuple[str, str]] = []
    searched: set[tuple[int, int]] = set()
    pending: list[tuple[Path, str]] = [(folder, "")]
    while pending:
        directory, relative = pending.pop()
        try:
            info = os.stat(directory)
            entries = list(os.scandir(directory))
        except OSError as error:
            skipped.append((relative or ".", f"unreadable folder ({error.strerror or error})"))
            continue
        if (info.st_dev, info.st_ino) in searched:
            skipped.append((relative, "symlink to a folder already searched (loop)"))
            continue
        searched.add((info.st_dev, info.st_ino))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                is_folder = entry.is_dir()  # follows symlinks; a looping link is caught by `searched`
            except OSError:
                is_folder = False
            if is_folder:
                pending.append((Path(entry.path), name))
                continue
            if not entry.name.lower().endswith(tuple(suffixes)):
                continue
            try:
                details = entry.stat()  # follows symlinks
            except OSError as error:
                reason = "broken or looping symlink" if entry.is_symlink() else (error.strerror or str(error))
                skipped.append((name, reason))
                continue
            if not stat.S_ISREG(details.st_mode):
                skipped.append((name, "not a regular file"))
                continue
            files.append(ImageFile(Path(entry.path), name, details.st_size, details.st_mtime_ns))
    files.sort(key=lambda file: natural_key(file.name))
    return files, skipped


def check_folder(root, *, label: str, hint: str) -> Path:
    """``root`` as a folder, or a one-line error saying what is wrong and ``hint`` (how to point at it)."""
    folder = Path(root).expanduser()
    if not folder.exists():
        raise GankitError(f"{label} data folder {str(folder)!r} not found; {hint}")
    if not folder.is_dir():
        raise GankitError(f"{label} data folder {str(folder)!r} is a file, not a folder; {hint}")
    return folder


def select_files(files: Sequence[ImageFile], *, label: str, limit: int = 0, holdout: int = 0):
    """Split ``files`` (in :func:`scan_images` order) into ``(training, held_out, subset)``.

    The last ``holdout`` files are held out of training; ``limit`` (0: all) then keeps the first ``limit`` of
    the rest. So the held-out files do not depend on ``limit``: ``holdout=1000,limit=500`` on 5,000 numbered
    files trains on the first 500 and holds out the last 1,000. ``subset`` names the selection for the cache
    (``""`` when every file is decoded, so a run with a holdout reads the same cache file as one without).
    """
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise GankitError(f"{label}: holdout must be 0 (none) or a positive number of images, got {holdout!r}")
    if holdout and holdout >= len(files):
        raise GankitError(
            f"{label}: holdout={holdout} leaves no image to train on: the folder holds {len(files)} image files"
        )
    training, held_out = list(files[: len(files) - holdout]), list(files[len(files) - holdout :])
    subset = ""
    if limit > 0:
        training = training[:limit]
        subset = f"first {limit}" + (f", last {holdout}" if holdout else "")
    return training, held_out, subset


# -- decoding one image ----------------------------------------------------------------------------------


def open_image_file(path: Path):
    """Open a file for reading (a seam for tests that simulate unreadable files when running as root)."""
    return open(path, "rb")


def read_image(path: Path, *, size: int, channels: int) -> np.ndarray:
    """One image as uint8 ``(channels, size, size)``: resized so its shorter side is ``size``, centre-cropped.

    Converts CMYK, palette, alpha (composited on white), 16-bit and bilevel images; applies the EXIF
    orientation; reads the first frame of an animation. Raises :class:`UnusableImage` for what is not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    with open_image_file(path) as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise UnusableImage("empty file")
        try:
            image = Image.open(handle)
        except UnidentifiedImageError:
            raise UnusableImage("not an image (unrecognised format)") from None
        except Image.DecompressionBombError:
            raise UnusableImage("too large to decode") from None
        with image:
            image.seek(0)
            if image.format == "JPEG":
                # Decode a big JPEG at 1/2, 1/4 or 1/8 scale (still >= size): much faster, far less memory.
                image.draft(image.mode, (size, size))
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                raise UnusableImage(f"too large ({width}x{height} pixels)")
            if width < 1 or height < 1:
                raise UnusableImage("empty image")
            image.load()
            try:
                ImageOps.exif_transpose(image, in_place=True)
            except Exception:  # a broken EXIF block: keep the pixels as stored
                pass
            image = _to_channels(image, channels)
            image = _fit(image, size)
            array = np.asarray(image, dtype=np.uint8)
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array)


def _to_channels(image, channels: int):
    from PIL import Image

    target = "L" if channels == 1 else "RGB"
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        # 16-bit and 32-bit samples: Pillow's convert("L") clips at 255; scale the mode's full range down instead.
        # The scale comes from the mode alone: guessing from the values turns a dark 16-bit image white.
        values = np.asarray(image).astype(np.float64) * (255.0 / _full_scale(mode, image.format))
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
        return image.convert(target)
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert(target)
    return image if mode == target else image.convert(target)


def _full_scale(mode: str, file_format) -> float:
    """The value of white for a single-channel mode with more than 8 bits: 65535 for the 16-bit family (``I;16``,
    ``I;16B``...; and ``I`` from a PNG, as older Pillow opens 16-bit PNGs), 2**31 - 1 for other 32-bit integer
    images, 1.0 for float images."""
    if mode == "F":
        return 1.0
    if mode.startswith("I;16") or (mode == "I" and file_format == "PNG"):
        return 65535.0
    return float(2**31 - 1)


def _fit(image, size: int):
    """Resize so the shorter side is ``size`` and crop the centre square: one resize from a source box."""
    from PIL import Image

    width, height = image.size
    if (width, height) == (size, size):
        return image
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize(
        (size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0
    )


# -- the data sources ------------------------------------------------------------------------------------


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Optional[callable]]:
    """A rich progress bar on stderr while the cache is built; nothing when stderr is not a terminal.

    The bar starts at the first update, so reading an existing cache shows nothing.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if total < _PROGRESS_THRESHOLD or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True
    )
    task = None

    def update(done: int, _total: int) -> None:
        nonlocal task
        if task is None:
            progress.start()
            task = progress.add_task(description, total=total)
        progress.update(task, completed=done)

    try:
        yield update
    finally:
        if task is not None:
            progress.stop()


def image_shape(label: str, image_size, channels) -> tuple[int, int, int]:
    """``(channels, size, size)``, or a one-line error for a channel count or size no decoder can serve."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise GankitError(f"{label}: channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 4:
        raise GankitError(f"{label}: image size must be an integer of at least 4 pixels, got {image_size}")
    if image_size > MAX_IMAGE_SIZE:
        raise GankitError(f"{label}: image size must be at most {MAX_IMAGE_SIZE} pixels, got {image_size}")
    return channels, image_size, image_size


def describe_skips(label: str, skipped: Sequence[tuple[str, str]], total: int) -> str:
    """One line: how many files were skipped, naming the first few with their reasons."""
    named = ", ".join(f"{name} ({reason})" for name, reason in skipped[:NAMED_SKIPS])
    more = f" and {len(skipped) - NAMED_SKIPS} more" if len(skipped) > NAMED_SKIPS else ""
    return f"{label}: skipped {len(skipped)} of {total} files that are not usable images: {named}{more}"


def _count_training(decoded_names: Sequence[str], held_out: Sequence[ImageFile], *, label: str) -> int:
    """How many of the decoded images (training files first, then held-out ones) are training images."""
    held_out_names = {file.name for file in held_out}
    training = sum(1 for name in decoded_names if name not in held_out_names)
    if not training:
        raise GankitError(f"{label}: no usable image left to train on besides the {len(held_out)} held out")
    if held_out and training == len(decoded_names):
        raise GankitError(f"{label}: none of the {len(held_out)} held-out files is a usable image")
    return training


def _decode_files(folder: Path, every_file: Sequence[ImageFile], scan_skipped: Sequence[tuple[str, str]], *,
                  label: str, image_size: int, channels: int, cache: bool, cache_dir, subset: str):
    """Decode ``every_file`` or read it from the cache, after checking the memory; warn once about skipped files.
    Returns the decoded images and every skipped file with its reason (the scan's first)."""
    shape = image_shape(label, image_size, channels)
    if not every_file and not scan_skipped:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise GankitError(f"{label} data folder {str(folder)!r} holds no images ({suffixes})")
    # The decoded images must fit in memory beside the networks (gankit.memory), or fail now, not after decoding.
    require(len(every_file) * int(np.prod(shape)), f"{len(every_file)} images of {channels}x{image_size}x{image_size}", label=label)
    settings = {"decoder": DECODER_VERSION, "size": image_size, "channels": channels, "subset": subset}
    decode = lambda path: read_image(path, size=image_size, channels=channels)  # noqa: E731
    with progress_bar(f"decoding {label} images (once)", len(every_file)) as progress:
        decoded = load_images(
            every_file, decode, shape=(channels, image_size, image_size), settings=settings, origin=folder,
            cache=cache, cache_dir=cache_dir, progress=progress,
        )
    skipped = [*scan_skipped, *decoded.skipped]
    if not decoded.names:
        first = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise GankitError(
            f"{label} data folder {str(folder)!r} holds no usable image ({len(skipped)} files skipped{first})"
        )
    if skipped:
        warnings.warn(GankitWarning(describe_skips(label, skipped, len(every_file) + len(scan_skipped))), stacklevel=4)
    return decoded, skipped


class ImageFiles(DataSource):
    """Images from a list of files, decoded once to uint8 ``(channels, size, size)`` and served by index.

    The base of the image-folder sources: subclasses find the files and call :meth:`load`, and, to be labelled,
    :meth:`label_images`.
    """

    horizontal_flip = False
    num_classes = None
    class_names = None
    _labels = None

    def load(
        self,
        folder: Path,
        files: Sequence[ImageFile],
        scan_skipped: Sequence[tuple[str, str]] = (),
        *,
        label: str,
        image_size: int,
        channels: int = 3,
        flip: bool = False,
        cache: bool = True,
        cache_dir=None,
        subset: str = "",
        held_out: Sequence[ImageFile] = (),
    ) -> None:
        """Decode ``files`` (found under ``folder``) or read them from the cache. ``subset`` names a selection
        of the folder's files (a split, a limit): each selection keeps its own cache file. ``held_out`` files
        (see :func:`select_files`) are decoded into the same cache file, after ``files``, but never trained on:
        :meth:`holdout_tensor` serves them to metrics."""
        every_file = [*files, *held_out]
        decoded, skipped = _decode_files(
            folder, every_file, scan_skipped, label=label, image_size=image_size, channels=channels, cache=cache,
            cache_dir=cache_dir, subset=subset,
        )
        training = _count_training(decoded.names, held_out, label=label)
        self.folder = folder
        self.images = decoded.images[:training]
        self.names = decoded.names[:training]
        self._held_out_images = decoded.images[training:]
        self.held_out_names = decoded.names[training:]
        self.skipped = skipped
        self.cache_path = decoded.cache_path
        self.built_cache = decoded.built and decoded.cache_path is not None
        self.image_size = image_size
        self.shape = (channels, image_size, image_size)
        self.horizontal_flip = bool(flip)
        self._fingerprint = files_fingerprint(files)
        if held_out:
            held_out_part = f"{self._fingerprint} held out {files_fingerprint(held_out)}"
            self._fingerprint = hashlib.sha256(held_out_part.encode()).hexdigest()

    def label_images(self, class_names: Sequence[str], class_of: Callable[[str], int], *, label: str) -> None:
        """Label the loaded images (after :meth:`load`): ``class_of(name)`` is the index in ``class_names`` of
        the file ``name`` (relative, as in :class:`ImageFile`). Labels come from the file names, never from the
        image cache, so a cached image keeps its label. A class left with no usable image is a one-line error."""
        import torch

        labels = torch.tensor([class_of(name) for name in self.names], dtype=torch.int64)
        if int(labels.min()) < 0 or int(labels.max()) >= len(class_names):
            raise GankitError(f"{label}: a class index outside 0..{len(class_names) - 1} (a bug in the data source)")
        counts = torch.bincount(labels, minlength=len(class_names))
        empty = [name for name, count in zip(class_names, counts.tolist()) if count == 0]
        if empty:
            more = f" (nor have {len(empty) - 1} more classes)" if len(empty) > 1 else ""
            raise GankitError(f"{label}: class {quoted(empty[0])} has no usable image{more}")
        self.num_classes = len(class_names)
        self.class_names = tuple(class_names)
        self._labels = labels

    def labels(self):
        return self._labels

    def fingerprint(self) -> str:
        """Which image files were found (names and sizes) and which are held out: resume warns when files were
        added or removed, or the holdout changed."""
        return self._fingerprint

    def holdout_tensor(self):
        """The held-out images, uint8 ``(N, C, H, W)`` at the training size, or ``None`` without a holdout."""
        import torch

        if not len(self.held_out_names):
            return None
        return torch.from_numpy(self._held_out_images)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int):
        import torch

        image = torch.from_numpy(np.array(self.images[index])).float() / 127.5 - 1.0
        return image if self._labels is None else (image, int(self._labels[index]))

    def tensor(self):
        import torch

        return torch.from_numpy(self.images)
