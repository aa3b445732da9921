"""Config + registry -> a :class:`Run`: the data, the networks, the loss and regularizers, the optimizers, the
batches and the noise, built and checked in a fixed order (the random draws must not move: seeded runs repeat).

Building resolves the config: recommendations of the data, loss, regularizers and metric are applied and the
resolved component specs recorded, so the config a run writes is the one it trained with.
"""
from __future__ import annotations

import dataclasses
import inspect
import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gankit.augmenting import Augmentations, build_augmentations
from gankit.batches import BatchStream
from gankit.components import DataSource, Loss, Regularizer
from gankit.conditioning import (
    architecture_context,
    check_conditional_outputs,
    data_classes,
    discriminate,
    generate,
    loss_outputs,
    planned_classes,
)
from gankit.config import RunConfig
from gankit.distributed import Distributed
from gankit.ema import GeneratorEMA
from gankit.errors import GankitError
from gankit.evaluation import TrainingEvaluator, build_metric
from gankit.memory import reserved
from gankit.options import format_spec
from gankit.precision import (
    check_precision,
    compile_module,
    configure_backends,
    make_grad_scaler,
    to_channels_last,
)
from gankit.registry import Built, Registry, default_registry
from gankit.schedule import DiscriminatorSchedule
from gankit.threads import apply_threads

SAMPLE_COUNT = 64
# Per float32 parameter in training: the weight, its gradient and Adam's two moments.
PARAMETER_BYTES = 4 * 4


@dataclass
class Data:
    """The training data: its source, the shape of one example, its fingerprint and the batch stream, and in a
    conditional run its classes (None otherwise, even when the source is labelled)."""

    source: DataSource
    shape: tuple[int, ...]
    fingerprint: str | None  # what ``DataSource.fingerprint()`` said; resume warns when it changed
    batches: BatchStream
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None


@dataclass
class Objective:
    """What the networks are trained for: the loss, the regularizers and the discriminator-step schedule."""

    loss: Loss
    regularizers: list[Regularizer]
    schedule: DiscriminatorSchedule
    generator_step_scores_real: bool  # decided once: the loss compares fakes with real scores
    # The loss's extra discriminator outputs (checked once); non-empty: the losses get the keyword calls.
    discriminator_outputs: tuple[str, ...] = ()
    # What the discriminator sees instead of the batches (--augment); None: the batches themselves.
    augmentations: Augmentations | None = None


@dataclass
class Networks:
    """The plain generator and discriminator (checkpoints, samples), the modules the step runs (which may
    wrap them in DDP or torch.compile and share their parameters), and the generator EMA when on."""

    generator: nn.Module
    discriminator: nn.Module
    step_generator: nn.Module
    step_discriminator: nn.Module
    # The generator update needs gradients with respect to D's input only, so it calls D outside DDP.
    frozen_discriminator: nn.Module
    channels_last: bool
    ema: GeneratorEMA | None

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples and metrics use: the EMA copy when ``--ema`` is on."""
        return self.ema.module if self.ema is not None else self.generator

    def generate(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Samples from the generator (its EMA when on) in eval mode (normalisation uses running statistics);
        ``labels`` (a conditional run) are the classes asked for."""
        if self.ema is not None:
            with torch.no_grad():
                return generate(self.ema.module, noise, labels)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad():
                return generate(self.generator, noise, labels)
        finally:
            self.generator.train(was_training)

    def eager(self, distributed: Distributed) -> Networks:
        """These networks with the step run on the plain modules (DDP modules stay: their forward is eager)."""
        if distributed.enabled:
            return self
        return dataclasses.replace(
            self, step_generator=self.generator, step_discriminator=self.discriminator,
            frozen_discriminator=self.discriminator,
        )


@dataclass
class Optimizers:
    """One optimizer per network, and one loss scaler per network for fp16 (None otherwise): their gradients
    have unrelated magnitudes."""

    optimizer_d: torch.optim.Optimizer
    optimizer_g: torch.optim.Optimizer
    scaler_d: Any
    scaler_g: Any

    def named(self) -> list[tuple[str, torch.optim.Optimizer]]:
        return [("optimizer_d", self.optimizer_d), ("optimizer_g", self.optimizer_g)]

    def scale_learning_rates(self, factor: float) -> None:
        for _, optimizer in self.named():
            for group in optimizer.param_groups:
                group["lr"] *= factor


@dataclass
class Run:
    """Everything a run is built from; the training state that changes as it trains is :class:`TrainState`."""

    config: RunConfig
    registry: Registry
    device: torch.device
    distributed: Distributed
    components: dict[str, Any]  # checkpoint key -> the registry's Component that built it
    data: Data
    objective: Objective
    networks: Networks
    optimizers: Optimizers
    noise: torch.Generator  # the training noise, apart from the networks' random draws
    fixed_noise: torch.Tensor  # the noise of the sample grids
    evaluator: TrainingEvaluator | None


def build_run(config: RunConfig, registry: Registry | None = None) -> Run:
    """Build and check a run; ``config`` is resolved in place (recommendations, recorded specs)."""
    registry = registry or default_registry()
    apply_threads(config.threads)  # before anything builds: data decoding and kernels already use them
    with reserved(check_before_data(config, registry), "the networks and their optimizer state"):
        data = registry.build(
            "data", config.data, root=config.data_root, image_size=config.image_size, seed=config.seed,
            cache=config.data_cache,
        )
    source: DataSource = data.value
    shape = tuple(int(s) for s in getattr(source, "shape", ()))
    if not shape:
        raise GankitError(f"data source {data.component.name!r} does not declare its shape")
    fingerprint = data_fingerprint(source, data.component.name)
    num_classes, class_names = data_classes(source, data.component.name) if config.conditional else (None, None)
    loss, regularizers = _build_objective_components(config, registry, data)
    scores_real = generator_needs_real_scores(loss.value, loss.component.qualified_name)
    outputs = loss_outputs(loss.value, loss.component.qualified_name, needs_real_scores=scores_real)
    built_regularizers = [built.value for built in regularizers]
    schedule = DiscriminatorSchedule(config, loss=loss.value, regularizers=built_regularizers)
    objective = Objective(loss.value, built_regularizers, schedule, scores_real, outputs)
    # Under torchrun each process takes its rank's device and joins the process group.
    distributed = Distributed.from_environment()
    device = distributed.device(resolve_device(config.device))
    check_precision(config.precision, device)
    distributed.join(device)
    seed_everything(config.seed)
    arch = _build_architecture(config, registry, data, shape, objective, device, num_classes=num_classes)
    _record_specs(config, registry, arch, loss, data, regularizers, shape)
    objective.augmentations, augmentations = _build_augmentations(config, registry, shape, device, distributed)
    components = _component_records(arch, loss, data, regularizers, augmentations)
    generator, discriminator = arch.value
    optimizers = _build_optimizers(config, generator, discriminator, device)
    batches = BatchStream(
        source, config.batch_size, seed=config.seed, device=device,
        rank=distributed.rank, world_size=distributed.world_size, num_classes=num_classes,
    )
    # Separate generators keep the noise stream and the fixed sample noise independent of the networks.
    noise = torch.Generator(device=device).manual_seed(config.seed)
    fixed = torch.Generator().manual_seed(config.seed + 1)
    fixed_noise = torch.randn(SAMPLE_COUNT, config.z_dim, generator=fixed).to(device)
    networks = _step_networks(config, generator, discriminator, shape, device, distributed)
    evaluator = _build_evaluator(config, registry, source, shape, device, num_classes)
    return Run(
        config, registry, device, distributed, components,
        Data(source, shape, fingerprint, batches, num_classes, class_names), objective,
        networks, optimizers, noise, fixed_noise, evaluator,
    )


def _build_augmentations(config: RunConfig, registry: Registry, shape: tuple[int, ...], device: torch.device,
                         distributed: Distributed) -> tuple[Augmentations | None, list[Built]]:
    """The augmentations of ``--augment`` (None without), their resolved specs recorded in the config."""
    augmentations, built = build_augmentations(
        registry, config.augment, shape=shape, seed=config.seed, device=device, distributed=distributed
    )
    config.augment = [record.spec for record in built]
    return augmentations, built


def _component_records(arch: Built, loss: Built, data: Built, regularizers: list[Built],
                       augmentations: list[Built]) -> dict[str, Any]:
    """Checkpoint key -> the registry's Component that built it (checkpoints record its plugin and version)."""
    return {
        "architecture": arch.component, "loss": loss.component, "data": data.component,
        **{f"regularizer.{i}": b.component for i, b in enumerate(regularizers)},
        **{f"augmentation.{i}": b.component for i, b in enumerate(augmentations)},
    }


def _build_objective_components(config: RunConfig, registry: Registry, data: Built) -> tuple[Built, list[Built]]:
    """The loss and regularizers, built and checked, their recommendations applied and the config validated."""
    data_recommended = dict(getattr(data.value, "recommended", {}) or {})
    config.recommend(data_recommended, source=f"data {data.component.name!r}", components=registry)
    loss = registry.build("loss", config.loss)
    if not isinstance(loss.value, Loss):
        raise GankitError(f"loss {loss.component.qualified_name!r} did not build a gankit.components.Loss")
    regularizers = [registry.build("regularizer", spec) for spec in config.reg]
    for spec in config.augment:  # unknown names and options fail now; the augmentations are built with the networks
        registry.resolve("augmentation", spec)
    for built in regularizers:
        if not isinstance(built.value, Regularizer):
            raise GankitError(
                f"regularizer {built.component.qualified_name!r} did not build a gankit.components.Regularizer"
            )
    # Recommendations: the data source's recipe wins over the regularizers', which win over the loss's, for the
    # loss and regularizers the recipe trains with itself. A loss or regularizer chosen instead brings its own
    # settings, which then win over the recipe's: a recipe's learning rate is tuned for its own loss.
    own = _recipe_components(registry, data_recommended)
    for built in [loss, *regularizers]:
        recommended = built.value.recommended or {}
        mine = built.component.qualified_name in own
        values = {k: v for k, v in recommended.items() if not (mine and k in data_recommended)}
        config.recommend(values, source=f"{built.component.kind} {built.component.name!r}", components=registry)
    config.validate()
    loss.value.check(config=config, regularizers=[built.value for built in regularizers])
    return loss, regularizers


def _recipe_components(registry: Registry, recipe: dict[str, Any]) -> set[str]:
    """Qualified names of the loss and regularizers a data source's recipe trains with: the loss it recommends
    (else the engine's default loss) and the regularizers it recommends."""
    wanted = [("loss", recipe.get("loss", _default("loss")))]
    wanted += [("regularizer", spec) for spec in recipe.get("reg") or []]
    names = set()
    for kind, spec in wanted:
        try:
            names.add(registry.resolve(kind, spec)[0].qualified_name)
        except GankitError:  # a recipe naming an unknown component fails where that component is built
            pass
    return names


def _default(key: str) -> Any:
    return {field.name: field.default for field in dataclasses.fields(RunConfig)}[key]


def _build_architecture(config: RunConfig, registry: Registry, data: Built, shape: tuple[int, ...],
                        objective: Objective, device: torch.device, *, num_classes: int | None) -> Built:
    """The (generator, discriminator) pair, prepared by the regularizers, on ``device`` and dry-run checked."""
    # An unknown name or option fails with its own message; an architecture that cannot condition, here.
    component, _ = registry.resolve("architecture", config.arch)
    context = architecture_context(
        component.factory, component.qualified_name, num_classes=num_classes,
        outputs=objective.discriminator_outputs, loss_name=config.loss,
    )
    try:
        arch = registry.build("architecture", config.arch, shape=shape, z_dim=config.z_dim, **context)
    except GankitError as error:
        # The factory knows the shape, not where it came from: name both sides of a mismatch.
        raise GankitError(
            f"architecture {config.arch!r} for data {data.component.name!r} of shape {shape}: {error}"
        ) from None
    networks = arch.value
    if not (isinstance(networks, tuple) and len(networks) == 2 and all(isinstance(n, nn.Module) for n in networks)):
        raise GankitError(
            f"architecture {arch.component.qualified_name!r} must return (generator, discriminator) "
            f"torch modules, got {type(networks).__name__}"
        )
    generator, discriminator = networks
    for regularizer in objective.regularizers:
        regularizer.check(generator=generator, discriminator=discriminator, loss=objective.loss)
        regularizer.prepare(generator=generator, discriminator=discriminator)
    generator.to(device)
    discriminator.to(device)
    check_shapes(
        generator, discriminator, arch.component.qualified_name, z_dim=config.z_dim, shape=shape, device=device,
        num_classes=num_classes, outputs=objective.discriminator_outputs,
    )
    return arch


def _record_specs(config: RunConfig, registry: Registry, arch: Built, loss: Built, data: Built,
                  regularizers: list[Built], shape) -> None:
    """Record the resolved specs (with converted options) in the config written to the run."""
    config.arch, config.loss, config.data = arch.spec, loss.spec, data.spec
    config.reg = [built.spec for built in regularizers]
    if config.image_size is None and len(shape) == 3:
        config.image_size = shape[-1]
    # Loggers are built when the run folder is known; their names and options are checked and recorded now.
    loggers = [registry.resolve("logger", spec) for spec in config.logger]
    names = [component.qualified_name for component, _ in loggers]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # two of one logger would write the same files twice over
        raise GankitError(f"logger {repeated[0]!r} is given more than once; give each --logger once")
    config.logger = [format_spec(component.qualified_name, options) for component, options in loggers]


def _build_optimizers(config: RunConfig, generator: nn.Module, discriminator: nn.Module, device) -> Optimizers:
    return Optimizers(
        make_optimizer(config.optimizer, discriminator.parameters(), lr=config.lr_d or config.lr, betas=config.betas),
        make_optimizer(config.optimizer, generator.parameters(), lr=config.lr_g or config.lr, betas=config.betas),
        make_grad_scaler(config.precision, device),
        make_grad_scaler(config.precision, device),
    )


def _step_networks(config: RunConfig, generator: nn.Module, discriminator: nn.Module, shape: tuple[int, ...],
                   device: torch.device, distributed: Distributed) -> Networks:
    """The modules and settings the training step runs with: memory layout, DDP, torch.compile, and the EMA
    (after the memory-layout change, so the copy matches)."""
    configure_backends(device)
    channels_last = config.channels_last and len(shape) == 3
    if channels_last:
        to_channels_last(generator)
        to_channels_last(discriminator)
    step_generator = distributed.wrap(generator, device)
    step_discriminator = distributed.wrap(discriminator, device)
    # No all-reduce for D's weights in the generator update, and every rank runs the same backward.
    frozen_discriminator = discriminator
    if config.compile:
        step_generator = compile_module(step_generator)
        step_discriminator = compile_module(step_discriminator)
        frozen_discriminator = compile_module(frozen_discriminator)
    ema = GeneratorEMA(generator, config.ema) if config.ema else None
    return Networks(
        generator, discriminator, step_generator, step_discriminator, frozen_discriminator, channels_last, ema
    )


def _build_evaluator(config: RunConfig, registry: Registry, source, shape, device,
                     num_classes: int | None = None) -> TrainingEvaluator | None:
    """The evaluator of ``--eval-every N --metric NAME`` (None when ``eval_every`` is 0).

    Unless the user chose ``best_metric``, the metric's headline value becomes it (with the metric's
    direction), so ``best.safetensors`` keeps the best evaluated checkpoint.
    """
    if not config.eval_every:
        return None
    if not config.metric:
        raise GankitError("--eval-every needs a metric: add --metric NAME (e.g. modes, swd, digits, fid)")
    built = build_metric(registry, config.metric, shape=shape, data=source, device=str(device))
    config.metric = built.spec
    metric = built.value
    from gankit.inference import check_memory, sample_bytes

    count = metric.sample_count if config.eval_count is None else config.eval_count
    check_memory(count, sample_bytes(shape, config.z_dim), "samples per evaluation", flag="--eval-count")
    config.recommend(
        {"best_metric": metric.key, "best_mode": "max" if metric.higher_is_better else "min"},
        source=f"metric {built.component.name!r}",
    )
    return TrainingEvaluator(
        built, count=config.eval_count, seed=config.seed + 2, data=source, z_dim=config.z_dim, device=device,
        num_classes=num_classes,
    )


def check_before_data(config: RunConfig, registry: Registry) -> int:
    """Check the architecture against the data's planned shape before any data is decoded, and return the
    bytes the networks will take in training (0 when the data source cannot tell its shape before building).

    The networks are built on the meta device: no memory, no random draws, so seeded runs are unchanged.
    """
    component, options = registry.resolve("data", config.data)
    planned = getattr(component.factory, "planned_shape", None)
    if planned is None:
        return 0
    shape = planned(
        root=config.data_root, image_size=config.image_size, seed=config.seed, cache=config.data_cache, **options
    )
    if not shape:
        return 0
    shape = tuple(int(s) for s in shape)
    arch, arch_options = registry.resolve("architecture", config.arch)
    conditional = {}
    if config.conditional:
        num_classes = planned_classes(component.factory)
        if num_classes is None:  # the classes are known once the data is built: checked then
            return 0
        conditional = architecture_context(arch.factory, arch.qualified_name, num_classes=num_classes, outputs=())
    try:
        with torch.device("meta"):
            networks = arch.factory(shape=shape, z_dim=config.z_dim, **conditional, **arch_options)
    except GankitError as error:
        raise GankitError(
            f"architecture {config.arch!r} for data {component.name!r} of shape {shape}: {error}"
        ) from None
    except Exception:  # a factory that cannot build on the meta device: the real build reports its own errors
        return 0
    modules = networks if isinstance(networks, tuple) else ()
    parameters = sum(p.numel() for module in modules if isinstance(module, nn.Module) for p in module.parameters())
    return parameters * PARAMETER_BYTES


def check_shapes(generator: nn.Module, discriminator: nn.Module, name: str, *, z_dim: int, shape, device,
                 num_classes: int | None = None, outputs: tuple[str, ...] = ()) -> None:
    """A dry run in eval mode on zeros (with labels 0 and 1 in a conditional run, and the extra outputs a loss
    asks for): catches a wrong architecture before any training, changes nothing."""
    generator.eval()
    discriminator.eval()
    labels = None if num_classes is None else torch.arange(2, device=device) % num_classes
    try:
        with torch.no_grad():
            fake = generate(generator, torch.zeros(2, z_dim, device=device), labels)
            if tuple(fake.shape) != (2, *shape):
                raise GankitError(
                    f"architecture {name!r} generates shape {tuple(fake.shape[1:])}, the data has {shape}"
                )
            scores, _ = discriminate(discriminator, fake, labels)
            if outputs:
                scores = check_conditional_outputs(scores, name, outputs, 2)
            if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (2,):
                got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                raise GankitError(
                    f"architecture {name!r}: the discriminator must return one raw score per example "
                    f"(shape (N,)), got {got}"
                )
    except GankitError:
        raise
    except Exception as error:
        raise GankitError(f"architecture {name!r} cannot process data of shape {shape}: {error}") from None
    finally:
        generator.train()
        discriminator.train()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GankitError("--device cuda was asked for, but no CUDA device is available (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GankitError(
            f"--device {name}: there is no CUDA device {device.index} (this machine has "
            f"{torch.cuda.device_count()}: cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GankitError("--device mps was asked for, but MPS is not available (use --device cpu)")
    return device


def make_optimizer(name: str, parameters, *, lr: float, betas) -> torch.optim.Optimizer:
    if name == "adam":
        parameters = list(parameters)
        # The fused kernel updates every tensor in one call: on CPU the per-tensor default costs more than the
        # networks themselves when they are small (the 2-D benchmarks). Devices without it keep the default.
        try:
            return torch.optim.Adam(parameters, lr=lr, betas=tuple(betas), fused=True)
        except (RuntimeError, ValueError):
            return torch.optim.Adam(parameters, lr=lr, betas=tuple(betas))
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    raise GankitError(f"unknown optimizer {name!r}")


def data_fingerprint(source: DataSource, name: str) -> str | None:
    """What ``DataSource.fingerprint()`` says identifies the data, or None when the source does not say."""
    fingerprint = getattr(source, "fingerprint", None)
    if not callable(fingerprint):
        return None
    try:
        value = fingerprint()
    except Exception as error:
        raise GankitError(f"data source {name!r}: fingerprint() failed: {type(error).__name__}: {error}") from None
    return None if value is None else str(value)


def generator_needs_real_scores(loss: Loss, name: str) -> bool:
    """Whether the generator step scores the real batch for this loss, decided once before training; a loss
    that asks for real scores but cannot take them fails here, not at the first step."""
    if not loss.generator_needs_real_scores:
        return False
    try:
        inspect.signature(loss.generator_loss).bind(None, real_scores=None)
    except TypeError:
        raise GankitError(
            f"loss {name!r} sets generator_needs_real_scores but its generator_loss does not take a "
            "real_scores argument: define generator_loss(self, fake_scores, real_scores)"
        ) from None
    except ValueError:  # a builtin or C function without a signature: trust it
        pass
    return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
