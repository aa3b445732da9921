"""The component interfaces that plugins implement: losses, regularizers, augmentations, data sources, metrics
and loggers.

Architectures are plain factories returning ``(generator, discriminator)`` torch modules, so they have no
base class here. This module never imports torch, so plugins can be listed without it.

Every component may carry ``recommended``: a mapping of run settings (keys of :class:`gankit.config.RunConfig`,
such as ``optimizer``, ``lr``, ``betas`` or ``d_steps``) that the engine applies unless the user set them.
Losses and regularizers may also decide how many discriminator updates each generator update gets
(``discriminator_steps``); a loss decides what counts as the discriminator winning outright
(``discriminator_wins``). docs/plugins.md has an example.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping


@dataclass(frozen=True)
class BoostSchedule:
    """``boost`` discriminator updates in each of the first ``warmup`` generator updates and in every
    ``every``-th one (0: never), the run's ``d_steps`` otherwise. The WGAN reference is ``(100, 25, 500)``.

    A component that keeps its schedule in ``boost_schedule`` lets ``--d-steps-boost``, ``--d-steps-warmup``
    and ``--d-steps-boost-every`` change it field by field.
    """

    boost: int = 100
    warmup: int = 0
    every: int = 0

    def __call__(self, step: int, base: int) -> int:
        boosted = step < self.warmup or (self.every > 0 and step % self.every == 0)
        return self.boost if boosted else base


class TrainingPolicy:
    """What a loss or regularizer may decide about the training procedure, beside its formula."""

    recommended: ClassVar[Mapping[str, Any]] = {}
    boost_schedule: BoostSchedule | None = None

    def discriminator_steps(self, step: int, base: int) -> int | None:
        """Discriminator updates before generator update ``step`` (0-based), or ``None``: no opinion.

        ``base`` is the run's ``d_steps``. The regularizers are asked first (the last given first), then the
        loss; the first answer that is not ``None`` counts, and without one every step gets ``base``. The
        default answers from ``boost_schedule`` when it is set.
        """
        return None if self.boost_schedule is None else self.boost_schedule(step, base)


class Loss(TrainingPolicy):
    """An adversarial loss over raw discriminator scores (no sigmoid in the network: the loss owns the link)."""

    # True: the generator step also computes the discriminator's scores on the current real batch and passes
    # them as ``generator_loss(fake_scores, real_scores=...)`` (relativistic losses). False (the default):
    # ``generator_loss(fake_scores)``, and the generator step costs no extra forward pass.
    generator_needs_real_scores: ClassVar[bool] = False
    # The discriminator's extra outputs the loss needs, e.g. ``("class_logits",)`` (docs/conditional.md). Non-empty:
    # the architecture is built with ``discriminator_outputs=`` and its discriminator returns ``(scores, {name:
    # tensor})``; the engine then calls ``discriminator_loss(real_scores, fake_scores, *, real_outputs,
    # fake_outputs, labels)`` and ``generator_loss(fake_scores, *, fake_outputs, labels)`` (plus ``real_scores=``
    # as above), with the dicts the discriminator returned and the batch's class labels (``None`` in a run that is
    # not conditional). Empty (the default): the calls below, exactly.
    discriminator_outputs: ClassVar[tuple[str, ...]] = ()

    def discriminator_loss(self, real_scores, fake_scores):
        """Scalar loss the discriminator minimises, from scores of shape ``(N,)`` on real and fake data."""
        raise NotImplementedError

    def generator_loss(self, fake_scores, real_scores=None):
        """Scalar loss the generator minimises, from the discriminator's scores on fake data (and, when
        ``generator_needs_real_scores``, on the current real batch: no gradient flows into them)."""
        raise NotImplementedError

    def statistics(self, real_scores, fake_scores) -> dict:
        """Extra scalar tensors to log each step, e.g. ``{"d_x": ...}``; the progress display and the loss
        plot show every one by its name. Called without gradients."""
        return {}

    def log_density_ratio(self, scores):
        """The discriminator's estimate of ``log p_data(x) / p_g(x)`` from its raw scores ``(N,)``, or ``None``
        when this loss's discriminator estimates no density ratio (the default). Discriminator rejection
        sampling and latent refinement (``gankit sample --drs`` / ``--refine``, which differentiates it) need it:
        bce's optimal discriminator has the log ratio as its logit."""
        return None

    def discriminator_wins(self, record: Mapping[str, float], *, threshold: float) -> bool:
        """Whether a logged interval (averaged ``d_loss``, ``g_loss`` and statistics) shows the discriminator
        winning outright; a run of these while ``g_loss`` climbs is a collapse (docs/reliability.md).

        The default: ``|d_loss| < threshold`` (the run's ``collapse_d_loss``). Return False always where a
        small discriminator loss means something else (a Wasserstein critic: the distributions are close).
        """
        return abs(record["d_loss"]) < threshold

    def check(self, *, config, regularizers) -> None:
        """Raise ``GankitError`` before training when the config or the regularizers do not suit this loss."""


class Regularizer(TrainingPolicy):
    """Constrains the discriminator. Every method is optional; the engine calls them at fixed points."""

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


class Augmentation:
    """A differentiable transform of batches ``(N, *shape)`` in [-1, 1] that the discriminator sees instead of
    the batches themselves, real and fake alike (DiffAugment, ADA). Built with ``shape`` and ``generator`` (the
    ``torch.Generator`` to draw from). Every method but ``__call__`` is optional."""

    def __call__(self, x):
        """The transformed batch, same shape; gradients must flow through it to the generator."""
        raise NotImplementedError

    def observe(self, real_scores) -> None:
        """See the discriminator's raw scores ``(N,)`` on the augmented real batch of each discriminator update
        (detached), to adapt the strength (ADA). Avoid ``.item()``: it stalls a GPU every step."""

    def statistics(self) -> dict:
        """Scalars (floats or 0-d tensors) to log each interval as ``augment_<key>``, e.g. ``{"p": p}``."""
        return {}

    def state_dict(self) -> dict:
        """What changes as it trains (tensors and JSON values), kept in checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class DataSource:
    """A dataset of training examples in [-1, 1] with a known shape, e.g. ``(3, 96, 96)`` or ``(2,)``.

    Implement ``__len__`` and ``__getitem__`` (returning one float tensor), or ``tensor()`` when the whole
    dataset fits in memory: the engine then draws batches by index from it, with no per-item Python work.

    A labelled source (``num_classes`` set, at least 2) serves class labels too: ``labels()`` aligned with
    ``tensor()``, or ``(example, label)`` items from ``__getitem__``. The engine reads them only in a run with
    ``--conditional`` (docs/conditional.md) and ignores them otherwise.
    """

    shape: tuple[int, ...] = ()
    # Set (>= 2) when the examples have classes; a class attribute when every instance has the same classes,
    # so that the engine can check the architecture before the data is decoded.
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None  #: one name per class, e.g. ("0", ..., "9"); None: their indices
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

    def labels(self):
        """The class of every example of ``tensor()``: an int64 tensor ``(N,)`` with values in
        ``[0, num_classes)``. ``None`` (the default): the source has no labels, or serves them as items."""
        return None

    def fingerprint(self) -> str | None:
        """A short string that changes when the examples change (files added, removed or rewritten; other
        settings of an embedded dataset). Checkpoints record it and ``--resume`` warns when it differs.

        Return ``None`` (the default) when the source cannot tell; resume then cannot check the data.
        """
        return None

    def holdout_tensor(self):
        """Examples kept out of training for evaluation, as ``tensor()`` returns them (uint8 ``(N, C, H, W)`` for
        images, at the training size), or ``None`` (the default): no holdout. Metrics that compare with real data
        (``swd``) use them instead of the training data when there are any."""
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

    def evaluate(self, samples, *, data, labels=None) -> dict:
        """Scores (plain floats, including ``key``) of ``samples``: a CPU float tensor ``(N, *shape)`` in the
        data's range ([-1, 1] for images). ``data`` is the run's DataSource, for metrics that compare with it.
        ``labels`` (an int64 tensor ``(N,)``): the class each sample was asked for, given when the run is
        conditional and the signature accepts ``labels``."""
        raise NotImplementedError


class Logger:
    """Receives the events of a run, typed dataclasses from ``gankit.events``: ``RunStarted``, ``StepLogged``
    (averaged losses), ``EvaluationDone``, ``SamplesWritten``, ``CheckpointWritten``, ``DivergenceDetected``
    and ``RunFinished``; each has ``name``, ``step`` and its own attributes. Built with the run folder."""

    def handle(self, event) -> None:
        """React to one event (write a line, a scalar...). Called in the training process, keep it quick."""

    def close(self) -> None:
        """Flush and release files at the end of the run, also after an interruption."""
