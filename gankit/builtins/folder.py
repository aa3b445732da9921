"""The ``folder`` data source: any folder of images, searched recursively, decoded once into the image cache.

Built, as ``anime`` and ``celeba`` are, on what :mod:`gankit.images` offers every image source. Nothing in the
user's folder is ever written: the cache lives in the cache folder.
"""
from __future__ import annotations

import gankit
from gankit.errors import GankitError
from gankit.images import ImageFiles, check_folder, image_shape, scan_images, select_files

DEFAULT_IMAGE_SIZE = 64


class FolderImages(ImageFiles):
    """Every image under ``root`` (recursively), resized and centre-cropped to ``image_size`` (default 64).

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
        holdout: int = 0,
    ) -> None:
        if root is None:
            raise GankitError("the folder data source needs --data-root PATH (the folder of images)")
        if limit < 0:
            raise GankitError(f"folder: limit must be 0 (every image) or a positive count, got {limit}")
        self.planned_shape(image_size=image_size, channels=channels)
        folder = check_folder(root, label="folder", hint="point --data-root at a folder of images")
        files, skipped = scan_images(folder)
        files, held_out, subset = select_files(files, label="folder", limit=limit, holdout=holdout)
        self.load(
            folder, files, skipped, label="folder", image_size=DEFAULT_IMAGE_SIZE if image_size is None else image_size, channels=channels,
            flip=flip, cache=cache, cache_dir=cache_dir, subset=subset, held_out=held_out,
        )


    @classmethod
    def planned_shape(cls, *, image_size=None, channels: int = 3, **_) -> tuple[int, int, int]:
        return image_shape("folder", DEFAULT_IMAGE_SIZE if image_size is None else image_size, channels)


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "folder",
        FolderImages,
        description="Any folder of images (--data-root), recursive; options: channels (1 or 3), flip, cache_dir, limit, holdout",
        aliases=("images",),
    )
