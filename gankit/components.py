"""The component interfaces that plugins implement: losses, regularizers and data sources.

Architectures are plain factories returning ``(generator, discriminator)`` torch modules, so they have no
base class here. This module never imports torch, so plugins can be listed without it.

Every component may carry ``recommended``: a mapping of run settings (keys of :class:`gankit.config.RunConfig`,
such as ``optimizer``, ``lr``, ``betas`` or ``d_steps``) that the engine applies unless the user set them.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping


class Loss:
    """An adversarial loss over raw discriminator scores (no sigmoid in the network: the loss owns the link)."""

    recommended: ClassVar[Mapping[str, Any]] = {}

    def discriminator_loss(self, real_scores, fake_scores):
        """Scalar loss the discriminator minimises, from scores of shape ``(N,)`` on real and fake data."""
        raise NotImplementedError

    def generator_loss(self, fake_scores):
        """Scalar loss the generator minimises, from the discriminator's scores on fake data."""
        raise NotImplementedError

    def statistics(self, real_scores, fake_scores) -> dict:
        """Extra scalar tensors to log each step, e.g. ``{"wasserstein": ...}``. Called without gradients."""
        return {}

    def check(self, *, config, regularizers) -> None:
        """Raise ``GankitError`` before training when the config or the regularizers do not suit this loss."""


class Regularizer:
    """Constrains the discriminator. Every method is optional; the engine calls them at fixed points."""

    recommended: ClassVar[Mapping[str, Any]] = {}
    # True when the regularizer keeps the discriminator's slope bounded, as a Wasserstein critic needs.
    lipschitz: ClassVar[bool] = False

    def check(self, *, generator, discriminator, loss) -> None:
        """Raise ``GankitError`` before training when this regularizer cannot work with these components."""

    def prepare(self, *, generator, discriminator) -> None:
        """Modify the networks in place once, before the optimizers are built (e.g. spectral norm)."""

    def penalty(self, *, discriminator, real, fake, real_scores, fake_scores, step: int):
        """Return a scalar added to the discriminator loss, or ``None``. ``fake`` is detached."""
        return None

    def after_discriminator_step(self, *, discriminator) -> None:
        """Act on the discriminator right after each optimizer step (e.g. weight clipping)."""


class DataSource:
    """A dataset of training examples in [-1, 1] with a known shape, e.g. ``(3, 96, 96)`` or ``(2,)``.

    Implement ``__len__`` and ``__getitem__`` (returning one float tensor), or ``tensor()`` when the whole
    dataset fits in memory: the engine then draws batches by index from it, with no per-item Python work.
    """

    shape: tuple[int, ...] = ()
    recommended: ClassVar[Mapping[str, Any]] = {}
    # True: the engine mirrors each image left-right with probability 1/2 per epoch (seeded, so resumable).
    horizontal_flip: bool = False

    @classmethod
    def planned_shape(cls, **options):
        """The shape the source will have when built with these options (the factory's keyword arguments),
        found without reading any data; ``None`` (the default) when only building tells.

        The engine checks the architecture and the memory against it before the data is decoded, so that a
        wrong size fails at once rather than after minutes. Raise ``GankitError`` for options that cannot work.
        """
        return None

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int):
        raise NotImplementedError

    def tensor(self):
        """The whole dataset as one tensor ``(N, *shape)``: uint8 in [0, 255] (images) or float in [-1, 1].

        Return ``None`` (the default) to be read item by item through a DataLoader instead.
        """
        return None

    def fingerprint(self) -> str | None:
        """A short string that changes when the examples change (files added, removed or rewritten; other
        settings of an embedded dataset). Checkpoints record it and ``--resume`` warns when it differs.

        Return ``None`` (the default) when the source cannot tell; resume then cannot check the data.
        """
        return None


class Metric:
    """Scores a generator's samples, e.g. mode coverage, a distance to the real data or a classifier's view.

    The engine and ``gankit eval`` draw ``sample_count`` samples (``-n`` overrides it) and call ``evaluate``.
    ``key`` names the headline value of the result, by which ``--eval-every`` keeps the best checkpoint.
    """

    key: ClassVar[str] = "score"
    higher_is_better: ClassVar[bool] = False
    sample_count: ClassVar[int] = 2500

    def check(self, *, shape, data) -> None:
        """Raise ``GankitError`` when this metric cannot score samples of ``shape`` from this data source."""

    def evaluate(self, samples, *, data) -> dict:
        """Scores (plain floats, including ``key``) of ``samples``: a CPU float tensor ``(N, *shape)`` in the
        data's range ([-1, 1] for images). ``data`` is the run's DataSource, for metrics that compare with it."""
        raise NotImplementedError


class Logger:
    """Receives the events of a run, typed dataclasses from ``gankit.events``: ``RunStarted``, ``StepLogged``
    (averaged losses), ``EvaluationDone``, ``SamplesWritten``, ``CheckpointWritten``, ``DivergenceDetected``
    and ``RunFinished``; each has ``name``, ``step`` and its own attributes. Built with the run folder."""

    def handle(self, event) -> None:
        """React to one event (write a line, a scalar...). Called in the training process, keep it quick."""

    def close(self) -> None:
        """Flush and release files at the end of the run, also after an interruption."""
