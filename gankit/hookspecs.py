"""Hook specifications: the one source of the contract between gankit and every plugin, builtin or third-party.

Each registration hook declares, next to its typed signature, the kind of component its factories build, the
CLI flag that names them and the keyword context gankit passes them (:func:`registers`). ``registry.KINDS``
is derived from these declarations, and the hook reference in docs/hooks.md is generated from this module
(``python -m gankit.hookdocs``; a test fails when the committed file differs).
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import pluggy

hookspec = pluggy.HookspecMarker("gankit")
hookimpl = pluggy.HookimplMarker("gankit")

# The gankit modules a plugin may import (docs/plugins.md); the builtins keep to them too, and a test checks
# every module under gankit/builtins/ and plugins/. Everything else in gankit may change without notice.
PUBLIC_MODULES = ("gankit", "gankit.components", "gankit.errors", "gankit.events", "gankit.images")


class Register(Protocol):
    """The callback every registration hook receives; each call registers one component.

    - `name`: a non-empty string without `:`, `=` or `,`; case-insensitive, `-` equals `_`.
    - `factory`: a class or callable, never a built object, so listing plugins builds nothing. Its keyword
      parameters, less the context listed for its hook, are the user options (`--loss NAME:key=value`), typed
      from their annotations or defaults.
    - `description`: one line shown by `gankit list-plugins`, `gankit info NAME` and `gankit.list_plugins()`.
    - `aliases`: other names (a string or a sequence of strings) that find the component when no component has
      that name.

    A plugin that registers an invalid name, a factory that is not callable or one name twice in one hook is
    marked failed and provides nothing.
    """

    def __call__(
        self, name: str, factory: Callable[..., Any], *, description: str = "", aliases: Sequence[str] | str = ()
    ) -> None: ...


@dataclass(frozen=True)
class ContextArgument:
    """A keyword argument gankit passes a factory itself, when the factory's signature accepts it (or ``**kwargs``)."""

    name: str
    type: str
    meaning: str
    # Empty: passed on every build. Otherwise the condition under which it is passed.
    when: str = ""
    # True when users may also set it in the spec (``fid:weights=PATH``): then it is listed among the options.
    user_option: bool = False


@dataclass(frozen=True)
class Factories:
    """What a registration hook's factories build: the component kind, its CLI flag, the return type, the context."""

    kind: str
    flag: str
    returns: str
    context: tuple[ContextArgument, ...] = ()

    @property
    def engine_context(self) -> tuple[str, ...]:
        """The context names that are never user options (left out of ``gankit info`` and of option checks)."""
        return tuple(argument.name for argument in self.context if not argument.user_option)


def registers(kind: str, flag: str, returns: str, context: Sequence[ContextArgument] = ()):
    """Declare what a hook's factories are; the declaration is also appended to the hook's docstring."""
    factories = Factories(kind, flag, returns, tuple(context))

    def declare(function):
        function.factories = factories
        function.__doc__ = f"{inspect.cleandoc(function.__doc__ or '')}\n\n{describe_factories(factories)}\n"
        return function

    return declare


def describe_factories(factories: Factories) -> str:
    """The factory signature and its context, as the Markdown that docstrings and docs/hooks.md show."""
    names = [argument.name for argument in factories.context if not argument.when]
    head = f"*, {', '.join(names)}, **options" if names else "**options"
    lines = [
        f"Factories: `({head}) -> {factories.returns}`,",
        f"chosen with `{factories.flag} NAME[:key=value,...]`.",
    ]
    if not factories.context:
        lines.append("gankit passes them no context: every keyword parameter is a user option.")
        return "\n".join(lines)
    lines.append("gankit passes each factory this keyword context, each only if its signature accepts it:")
    lines.append("")
    for argument in factories.context:
        when = f" Only {argument.when}." if argument.when else ""
        option = " Users may also set it as an option." if argument.user_option else " Not a user option."
        item = f"- `{argument.name}: {argument.type}`: {argument.meaning}.{when}{option}"
        lines.append(textwrap.fill(item, width=112, subsequent_indent="  ", break_on_hyphens=False))
    return "\n".join(lines)


def component_hooks() -> dict[str, Callable]:
    """The registration hooks, by name, in the order they are declared here (the order of ``registry.KINDS``)."""
    return {
        name: value for name, value in globals().items() if hasattr(value, "factories") and hasattr(value, "gankit_spec")
    }


# --- components: the parts a GAN is built from -------------------------------------------------------


@hookspec
@registers(
    "architecture",
    "--arch",
    "(generator, discriminator)",
    (
        ContextArgument("shape", "tuple[int, ...]", "the data's shape without the batch dimension, e.g. `(1, 32, 32)`"
                        " for the digits, `(3, 96, 96)` for anime faces, `(2,)` for 2-D points"),
        ContextArgument("z_dim", "int", "the noise size (`--z-dim`)"),
        ContextArgument("num_classes", "int", "the data's number of classes: build class-conditional networks,"
                        " called `generator(z, labels)` and `discriminator(x, labels)` with int64 labels `(N,)`;"
                        " a factory that does not accept it cannot condition and `--conditional` is refused",
                        when="when the run is conditional (`--conditional`)"),
        ContextArgument("discriminator_outputs", "tuple[str, ...]", "the extra outputs the loss needs, e.g."
                        " `(\"class_logits\",)`: the discriminator then returns `(scores, {name: tensor})`; a factory"
                        " that does not accept it is refused for such a loss",
                        when="when the loss declares `discriminator_outputs`"),
    ),
)
def gankit_register_architectures(register: Register) -> None:
    """Register architectures: pairs of `torch.nn.Module`s.

    Called once per plugin when the registry is built. The factory returns `(generator, discriminator)`:

    - `generator(z)` maps noise `(N, z_dim)` to samples `(N, *shape)`, in [-1, 1] for images (end with `tanh`).
    - `discriminator(x)` returns one **raw score** per example, shape `(N,)`: no sigmoid, the loss owns the link
      function (BCE on logits, hinge and Wasserstein all read the same raw scores).
    - A factory that cannot serve a shape raises `gankit.errors.GankitError` naming the shapes it supports.
      Before decoding the data, gankit may call the factory once under `torch.device("meta")` to check the
      shape and count the parameters (a factory that fails there is simply built again on the real device);
      before training it runs both networks once on zeros and refuses wrong output shapes.
    - Without the conditional context below, the factory builds exactly its unconditional networks (same
      parameter names, same random draws). `class_logits` (the ACGAN output) is `(N, num_classes)` raw logits.
      [conditional.md](conditional.md) shows a conditional architecture.
    """


@hookspec
@registers("loss", "--loss", "gankit.components.Loss")
def gankit_register_losses(register: Register) -> None:
    """Register losses: `gankit.components.Loss` objects (a `Loss` subclass is its own factory).

    Called once per plugin when the registry is built. The engine calls, on raw scores of shape `(N,)`:

    - `discriminator_loss(real_scores, fake_scores)`: the scalar the discriminator minimises;
    - `generator_loss(fake_scores)`: the scalar the generator minimises; with the class attribute
      `generator_needs_real_scores = True`, `generator_loss(fake_scores, real_scores=...)` with the updated
      discriminator's scores on the current real batch (relativistic losses; otherwise no extra forward pass);
    - `statistics(real_scores, fake_scores)` (optional): extra scalar tensors logged each interval, called
      without gradients, shown by name in the progress bar and `losses.png`;
    - `discriminator_steps(step, base)` (optional): discriminator updates before generator update `step`, or
      `None` for no opinion (or a class attribute `boost_schedule = BoostSchedule(boost, warmup, every)`);
    - `discriminator_wins(record, *, threshold)` (optional): whether a logged interval shows the discriminator
      winning outright, for the collapse check (default `abs(record["d_loss"]) < threshold`);
    - `log_density_ratio(scores)` (optional): the discriminator's estimate of `log p_data(x) / p_g(x)` from its
      raw scores, or `None` (the default) when the loss's discriminator estimates no such ratio; discriminator
      rejection sampling and latent refinement (`gankit sample --drs` / `--refine`, [sampling.md](sampling.md))
      need it (bce: the scores themselves); it must be differentiable for `--refine`;
    - `check(*, config, regularizers)` (optional): raise `GankitError` before training when the settings or the
      regularizers do not suit the loss.

    A loss that needs more of the discriminator than its scores names the outputs in the class attribute
    `discriminator_outputs` (e.g. `("class_logits",)`); the engine then calls
    `discriminator_loss(real_scores, fake_scores, *, real_outputs, fake_outputs, labels)` and
    `generator_loss(fake_scores, *, fake_outputs, labels)` (plus `real_scores=` as above), where `*_outputs` are
    the dicts the discriminator returned and `labels` the batch's classes (`None` unless `--conditional`). It
    checks these signatures once before training ([conditional.md](conditional.md)).

    [plugins.md](plugins.md#losses) has an example that uses each of them, and
    [losses.md](losses.md#policy-in-the-loss) how the schedule combines with regularizers and flags.

    `recommended` (a class attribute) maps run settings (`optimizer`, `lr`, `betas`, `d_steps`...) to values the
    engine applies unless the user set them in a flag or the config file.
    """


@hookspec
@registers("regularizer", "--reg", "gankit.components.Regularizer")
def gankit_register_regularizers(register: Register) -> None:
    """Register regularizers: `gankit.components.Regularizer` objects.

    Called once per plugin when the registry is built. Every method is optional; the engine calls them at fixed
    points, for every `--reg` given (they combine: `--reg clip --reg gp`):

    - `check(*, generator, discriminator, loss)` before training: raise `GankitError` if it cannot work;
    - `prepare(*, generator, discriminator)` once, before the optimizers are built (e.g. spectral norm);
    - `penalty(*, discriminator, real, fake, real_scores, fake_scores, step)` each discriminator step: a scalar
      added to the discriminator loss, or `None` (`fake` is detached);
    - `after_discriminator_step(*, discriminator)` after each discriminator update (e.g. weight clipping);
    - `discriminator_steps(step, base)` or `boost_schedule`, as for losses; a regularizer's outranks the loss's.

    `lipschitz = True` (class attribute) says the regularizer bounds the discriminator's slope, which a
    Wasserstein loss needs; `recommended` works as for losses.
    """


@hookspec
@registers(
    "augmentation",
    "--augment",
    "gankit.components.Augmentation",
    (
        ContextArgument("shape", "tuple[int, ...]", "the data's shape without the batch dimension, e.g. `(3, 64, 64)`;"
                        " a factory that cannot transform it raises `GankitError`"),
        ContextArgument("generator", "torch.Generator", "the random generator to draw every random choice from, on"
                        " the run's device: seeded from the run's seed and kept in checkpoints, so a resumed run"
                        " augments exactly as one that never stopped"),
    ),
)
def gankit_register_augmentations(register: Register) -> None:
    """Register augmentations: `gankit.components.Augmentation` objects, differentiable transforms of batches.

    Called once per plugin when the registry is built. For every `--augment` given (they compose, in order),
    the engine calls `augmentation(x)` on each batch before the discriminator sees it: `x` is `(N, C, H, W)` (or
    `(N, *shape)`) in [-1, 1], real batches and fake ones alike, in the discriminator update and in the generator
    update; the generator's gradients flow through it, so use differentiable tensor operations only. Regularizers
    (R1, gradient penalty) see the augmented reals. Optional:

    - `observe(real_scores)`: the discriminator's raw scores `(N,)` (detached) on each augmented real batch,
      after each discriminator update's forward pass, to adapt (ADA); keep it free of host syncs;
    - `statistics()`: scalars logged each interval as `augment_<key>` (e.g. `augment_p`);
    - `state_dict()` and `load_state_dict(state)`: what changes as it trains (tensors and JSON values), kept in
      checkpoints so that `--resume` continues bit for bit.

    Without `--augment` the engine calls nothing and draws nothing: runs train exactly as before.
    [augmentation.md](augmentation.md) has an example.
    """


@hookspec
@registers(
    "data",
    "--data",
    "gankit.components.DataSource",
    (
        ContextArgument("root", "str | None", "`--data-root`, or `None` when not given"),
        ContextArgument("image_size", "int | None", "`--image-size`, or `None`: use the source's own size"),
        ContextArgument("seed", "int", "the run's seed (`--seed`)"),
        ContextArgument("cache", "bool", "`False` with `--no-cache`: decode without reading or writing a cache"),
    ),
)
def gankit_register_data_sources(register: Register) -> None:
    """Register data sources: `gankit.components.DataSource` objects serving examples in [-1, 1].

    Called once per plugin when the registry is built. `gankit run` builds the data source first; `gankit eval`
    rebuilds it from the checkpoint's config. A `DataSource` has `shape` (e.g. `(3, 64, 64)` or `(2,)`) and
    either:

    - `__len__` and `__getitem__(index)` returning one float tensor of `shape` in [-1, 1], read through a
      DataLoader; or
    - `tensor()` returning the whole dataset as one tensor `(N, *shape)`, `uint8` in [0, 255] for images or
      float in [-1, 1], the fast path: the engine then draws batches by index with no per-item Python work.
      Return `None` (the default) to use the first way.

    `recommended` sets run settings for this data (the data's recipe outranks the recommendations of its own loss
    and regularizers, not those of a loss or regularizer the user chose instead: plugins.md, "Recommendations");
    `horizontal_flip = True` asks the engine to mirror images left-right at random. `fingerprint()` (optional,
    default `None`) returns a string that changes when the examples change: checkpoints record it under
    `data_fingerprint`, and `--resume` warns in one line when it differs. `holdout_tensor()` (optional, default
    `None`) returns examples kept out of training, as `tensor()` would (uint8 `(N, C, H, W)` for images at the
    training size); metrics such as `swd` then compare against them instead of the training data. A classmethod
    `planned_shape(*, root, image_size, seed, cache, **options)` (optional) returns the shape before anything
    is decoded, so that a mismatched architecture fails at once; it receives the whole context and the user's
    options, so end its signature with `**_`. Image sources share the public module `gankit.images`
    ([data.md](data.md#writing-an-image-source)).

    A labelled source sets `num_classes` (at least 2; a class attribute when known before building) and
    optionally `class_names`, and serves labels with `labels()` (int64 `(N,)`, aligned with `tensor()`) or as
    `(example, label)` items. They are read only by runs with `--conditional` ([conditional.md](conditional.md)).
    """


# --- evaluation and reporting ------------------------------------------------------------------------


@hookspec
@registers(
    "metric",
    "--metric",
    "gankit.components.Metric",
    (
        ContextArgument("device", "str", "the device to score on, e.g. `\"cpu\"` or `\"cuda:0\"`"),
        ContextArgument("weights", "str", "a weights file (`gankit eval --weights PATH`); gankit refuses"
                        " `--weights` in one line for a factory without a `weights` parameter",
                        when="when `--weights` is given",
                        user_option=True),
    ),
)
def gankit_register_metrics(register: Register) -> None:
    """Register metrics: `gankit.components.Metric` objects that score generated samples.

    Called once per plugin when the registry is built. A metric is built by `--eval-every N --metric NAME`
    before training and by `gankit eval`. A `Metric` has `key` (the headline value in its result, by which
    `--eval-every` keeps `best.safetensors`), `higher_is_better`, `sample_count` (the default `-n`),
    `check(*, shape, data)` (raise `GankitError` when it cannot score that data, before any training) and
    `evaluate(samples, *, data) -> dict[str, float]`, where `samples` is a CPU float tensor `(N, *shape)` and
    `data` the run's `DataSource`. For a conditional run or checkpoint, `evaluate(samples, *, data, labels)` also
    gets the int64 classes `(N,)` the samples were drawn for, when its signature accepts `labels`.
    """


@hookspec
@registers(
    "logger",
    "--logger",
    "gankit.components.Logger",
    (ContextArgument("out", "pathlib.Path", "the run folder, where a logger writes its files"),),
)
def gankit_register_loggers(register: Register) -> None:
    """Register loggers: `gankit.components.Logger` objects that receive the run's events.

    Called once per plugin when the registry is built. `gankit run --logger NAME` (repeatable) builds them
    before training. Then, in the training process (rank 0 under torchrun):

    - `handle(event)` receives every event of the run, in order, as one of the typed dataclasses of
      `gankit.events` (see [Events](#events)). Tell them apart with `isinstance(event, StepLogged)` or
      `event.name == "log"`, and read their attributes. It is called between training steps: keep it quick.
    - `close()` is called once at the end, also after an interruption or an error.
    """
