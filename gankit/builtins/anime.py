"""The ``anime`` data source: the article's layout, a folder of numbered face images (``faces/N.jpg``).

Built on :mod:`gankit.images`, as ``folder`` is: decoded once into the image cache, broken files skipped and counted.
It recommends one of two recipes (option ``recipe``): ``cpu``, the default, that gives faces on a laptop CPU
within half an hour, and ``article``, the article's own settings.
"""
from __future__ import annotations

import gankit
from gankit.errors import GankitError
from gankit.images import ImageFiles, check_folder, image_shape, scan_images, select_files

ARTICLE_SIZE = 96  # the article's

# Each recipe: the image size it trains at (unless --image-size) and the run settings it recommends (a setting
# the user gives wins). The cpu recipe comes from the anime table in docs/benchmarks.md (held-out SWD of each
# setting at the same step count on this project's 2-core CPU): at 64x64 a half-width DCGAN takes about a
# second a step with one thread, and the EMA generator scored best; DiffAugment and hinge + spectral
# norm did not help by 400 steps, so the recipe leaves them out (--augment diffaug adds it).
RECIPES = {
    "cpu": (64, {
        "arch": "dcgan:dcgan:width=32",  # plugin-qualified: another plugin's "dcgan" cannot take it
        "ema": 0.999,
        "steps": 1500,
        "sample_every": 250,
    }),
    "article": (ARTICLE_SIZE, {}),  # the engine's defaults are the article's: dcgan at width 64, bce, Adam 2e-4
}
DEFAULT_RECIPE = "cpu"


def check_recipe(recipe) -> str:
    if recipe not in RECIPES:
        raise GankitError(f"anime: recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    return recipe


class AnimeFaces(ImageFiles):
    """RGB face images from ``root`` (default ``faces``), resized to ``image_size`` (default: the recipe's, 64 for
    ``cpu`` and 96 for ``article``), in number order.

    ``holdout=N`` keeps the last N images (the highest numbers) out of training, for metrics (``holdout_tensor``).
    ``recipe`` chooses the recommended settings (:data:`RECIPES`).
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
        recipe: str = DEFAULT_RECIPE,
    ) -> None:
        default_size, recommended = RECIPES[check_recipe(recipe)]
        self.recommended = dict(recommended)
        self.recipe = recipe
        self.planned_shape(image_size=image_size, recipe=recipe)
        folder = check_folder(
            root if root is not None else "faces",
            label="anime",
            hint="point --data-root at the folder of face images (e.g. --data-root path/to/faces)",
        )
        files, skipped = scan_images(folder)
        files, held_out, subset = select_files(files, label="anime", limit=limit, holdout=holdout)
        self.load(
            folder, files, skipped, label="anime", image_size=default_size if image_size is None else image_size,
            flip=flip, cache=cache, subset=subset, held_out=held_out,
        )

    @classmethod
    def planned_shape(cls, *, image_size=None, recipe=DEFAULT_RECIPE, **_) -> tuple[int, int, int]:
        default_size, _recommended = RECIPES[check_recipe(recipe)]
        return image_shape("anime", default_size if image_size is None else image_size, 3)


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "anime",
        AnimeFaces,
        description="The article's anime faces: a folder of N.jpg images (--data-root), 3x64x64 with the cpu "
                    "recipe (default), 3x96x96 with recipe=article",
    )
