"""The ``digits`` data source: digits 0-9 rendered with Pillow's bundled font, the embedded default dataset.

The rendering and its cache live in :mod:`gankit.builtins.rendered_digits`, which the ``digits`` metric shares.
"""
from __future__ import annotations

import hashlib

import gankit
from gankit.builtins.rendered_digits import DEFAULT_COUNT, DEFAULT_IMAGE_SIZE, check_arguments, load_digits
from gankit.components import DataSource


# --- the data source ------------------------------------------------------------------------------------


class DigitsDataSource(DataSource):
    """Digits 0-9 rendered with Pillow, ``(1, S, S)`` grayscale, white on black; ``S`` is 32 by default.
    Labelled: class ``k`` is the digit ``k``.

    ``root`` is the cache folder when given (no files are needed). The content is fixed by ``dataset_seed``,
    not by the training ``seed``, so that every run trains on the same images.
    """

    # The default run, the first one a newcomer sees: DCGAN at half the article's width, 1,000 steps, a few
    # minutes on a 2-core CPU. The article's Adam 2e-4 with 100-dimensional noise drew blobs by then (digits
    # score 6.3); 15 times the rate, decayed linearly over the second half, and 32-dimensional noise draw
    # readable digits in the same time (7.7-7.9; docs/benchmarks.md, "Digits: the default run"). The rate goes
    # with bce, the loss this recipe trains: another --loss brings its own (docs/plugins.md, "Recommendations").
    # Every setting the user gives wins.
    recommended = {
        "arch": "dcgan:dcgan:width=32",  # plugin-qualified: another plugin's "dcgan" cannot take it
        "lr": 3e-3,
        "lr_decay": 0.5,
        "z_dim": 32,
    }
    num_classes = 10
    class_names = tuple(str(digit) for digit in range(10))

    def __init__(self, *, root=None, image_size=None, seed=0, count: int = DEFAULT_COUNT, dataset_seed: int = 0):
        import torch

        size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
        count, dataset_seed, size = check_arguments(count, dataset_seed, size)
        images, labels = load_digits(count, seed=dataset_seed, image_size=size, cache_dir=root)
        self.shape = (1, size, size)
        self.image_size = size
        self.dataset_seed = dataset_seed
        self._images = torch.from_numpy(images)
        self._labels = torch.from_numpy(labels).long()  # the digit drawn in each image

    @classmethod
    def planned_shape(cls, *, image_size=None, count: int = DEFAULT_COUNT, dataset_seed: int = 0, **_):
        _, _, size = check_arguments(count, dataset_seed, DEFAULT_IMAGE_SIZE if image_size is None else image_size)
        return (1, size, size)

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int):
        return self._images[index].float() / 127.5 - 1.0, int(self._labels[index])

    def tensor(self):
        return self._images

    def labels(self):
        return self._labels

    def fingerprint(self) -> str:
        """A digest of the rendered pixels: the settings fix them, but another Pillow or font may draw them
        differently."""
        return hashlib.sha256(self._images.numpy().tobytes()).hexdigest()


@gankit.hookimpl
def gankit_register_data_sources(register):
    register(
        "digits",
        DigitsDataSource,
        description="Embedded digits 0-9 rendered with Pillow (1x32x32, no download)",
        aliases=("mnist-like",),
    )
