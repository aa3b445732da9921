"""The ``anime`` data source: the article's layout, a folder of numbered face images (``faces/N.jpg``).

Built on :mod:`gankit.images`, as ``folder`` is: decoded once into the image cache, broken files skipped and counted.
"""
from __future__ import annotations

import gankit
from gankit.images import ImageFiles, check_folder, image_shape, scan_images, select_files

DEFAULT_SIZE = 96  # the article's


class AnimeFaces(ImageFiles):
    """RGB face images from ``root`` (default ``faces``), resized to ``image_size`` (default 96), in number order.

    ``holdout=N`` keeps the last N images (the highest numbers) out of training, for metrics (``holdout_tensor``).
    """

    def __init__(
        self,
        *,
        root: str | None = None,
        image_size: int | None = None,
        seed: int = 0,
        cache: bool = True,
        flip: bool = False,
        limit: int = 0,
        holdout: int = 0,
    ) -> None:
        self.planned_shape(image_size=image_size)
        folder = check_folder(
            root if root is not None else "faces",
            label="anime",
            hint="point --data-root at the folder of face images (e.g. --data-root path/to/faces)",
        )
        files, skipped = scan_images(folder)
        files, held_out, subset = select_files(files, label="anime", limit=limit, holdout=holdout)
        self.load(
            folder, files, skipped, label="anime", image_size=DEFAULT_SIZE if image_size is None else image_size,
            flip=flip, cache=cache, subset=subset, held_out=held_out,
        )

    @classmethod
    def planned_shape(cls, *, image_size=None, **_) -> tuple[int, int, int]:
        return image_shape("anime", DEFAULT_SIZE if image_size is None else image_size, 3)


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "anime",
        AnimeFaces,
        description="The article's anime faces: a folder of N.jpg images (--data-root), 3x96x96",
    )
