"""The training loop. It knows the component interfaces, never a component's name.

``Trainer(config).train()`` builds everything from the registry, then alternates discriminator and
generator updates. One step, top to bottom:

    for each of d_steps_at(step):   real batch, fresh noise z, fake = G(z)    (the loss's or regularizers' schedule)
                                    D loss on (D(real), D(fake.detach())) + regularizer penalties; D update;
                                    regularizers act after the update (weight clipping)
    generator update:               the last fake batch again (generator_noise = "reuse", the article's DCGAN)
                                    or a fresh one ("fresh", the WGAN reference); D frozen: G loss on D(fake),
                                    and on D(last real batch) for losses that ask for it (relativistic ones)
"""
from __future__ import annotations

import inspect
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gankit import __version__
from gankit.batches import BatchStream
from gankit.checkpoint import (
    CheckpointKeeper,
    list_checkpoints,
    prefixed,
    remove_partial_writes,
    split_state,
    write_atomic,
)
from gankit.components import DataSource, Loss, Regularizer
from gankit.config import RunConfig
from gankit.distributed import Distributed
from gankit.ema import GeneratorEMA
from gankit.divergence import DivergenceGuard, nonfinite_tensors
from gankit.errors import GankitError
from gankit.memory import reserved
from gankit.events import (
    CheckpointWritten,
    DivergenceDetected,
    Event,
    Listener,
    RunFinished,
    RunStarted,
    SamplesWritten,
    StepLogged,
)
from gankit.precision import (
    autocast,
    backward_and_step,
    batch_to_channels_last,
    check_precision,
    compile_module,
    configure_backends,
    make_grad_scaler,
    to_channels_last,
)
from gankit.registry import Registry, default_registry
from gankit.evaluation import build_training_evaluator, close_run, open_loggers
from gankit.plots import write_vector_samples
from gankit.samples import save_grid
from gankit.schedule import DiscriminatorSchedule
from gankit.signals import StopRequest, TrainingInterrupted
from gankit.threads import apply_threads

SAMPLE_COUNT = 64
# Per float32 parameter in training: the weight, its gradient and Adam's two moments.
PARAMETER_BYTES = 4 * 4
VECTOR_SAMPLE_COUNT = 1000  # points per sample plot of vector (e.g. 2-D) data


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


class MetricsLog:
    """Appends one JSON object per logged interval to ``metrics.jsonl``, and one per divergence event."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepLogged):
            self._append({"step": event.step, **event.values, "img_per_s": event.images_per_second})
        elif isinstance(event, DivergenceDetected):  # rows with an "event" key are events, not interval averages
            self._append({"step": event.step, "event": event.name, **event.details()})

    def _append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")


class Trainer:
    """Builds a GAN from a RunConfig and trains it, writing a run directory."""

    def __init__(self, config: RunConfig, *, registry: Registry | None = None, listeners: list[Listener] = ()) -> None:
        self.config = config
        self.registry = registry or default_registry()
        self.listeners: list[Listener] = list(listeners)
        self.step = 0
        self.out: Path | None = None
        self._build()
        self._init_reliability()

    def _init_reliability(self) -> None:
        """The state that checkpoints, resume and the divergence guard add (docs/reliability.md)."""
        config = self.config
        # The logging interval being accumulated; in checkpoints, so a resumed run logs the same averages.
        self.interval_totals: dict[str, torch.Tensor] = {}
        self.interval_count = 0
        self.guard = DivergenceGuard(config, discriminator_wins=self.loss.discriminator_wins)
        self.keeper = CheckpointKeeper(None, keep=config.keep_checkpoints, metric=config.best_metric, mode=config.best_mode)
        self.listeners.append(self.keeper)
        self.stop_request = StopRequest()
        self.resumed_from: Path | None = None

    # -- building --------------------------------------------------------------------------------

    def _build(self) -> None:
        config = self.config
        registry = self.registry
        apply_threads(config.threads)  # before anything builds: data decoding and kernels already use them
        with reserved(self._check_before_data(), "the networks and their optimizer state"):
            data = registry.build(
                "data", config.data, root=config.data_root, image_size=config.image_size, seed=config.seed,
                cache=config.data_cache,
            )
        self.source: DataSource = data.value
        shape = tuple(int(s) for s in getattr(self.source, "shape", ()))
        if not shape:
            raise GankitError(f"data source {data.component.name!r} does not declare its shape")
        self.shape = shape
        self.data_fingerprint = _data_fingerprint(self.source, data.component.name)
        data_recommended = dict(getattr(self.source, "recommended", {}) or {})
        config.recommend(data_recommended, source=f"data {data.component.name!r}", components=registry)

        loss = registry.build("loss", config.loss)
        if not isinstance(loss.value, Loss):
            raise GankitError(f"loss {loss.component.qualified_name!r} did not build a gankit.components.Loss")
        self.loss: Loss = loss.value
        regularizers = [registry.build("regularizer", spec) for spec in config.reg]
        for built in regularizers:
            if not isinstance(built.value, Regularizer):
                raise GankitError(
                    f"regularizer {built.component.qualified_name!r} did not build a gankit.components.Regularizer"
                )
        self.regularizers: list[Regularizer] = [built.value for built in regularizers]
        # Recommendations: the data source's recipe wins over the regularizers', which win over the loss's.
        protected = set(data_recommended)
        for built in [loss, *regularizers]:
            values = {k: v for k, v in (built.value.recommended or {}).items() if k not in protected}
            config.recommend(values, source=f"{built.component.kind} {built.component.name!r}", components=registry)
        config.validate()
        self.loss.check(config=config, regularizers=self.regularizers)
        self.generator_step_scores_real = generator_needs_real_scores(self.loss, loss.component.qualified_name)
        self.schedule = DiscriminatorSchedule(config, loss=self.loss, regularizers=self.regularizers)

        # Under torchrun each process takes its rank's device and joins the process group.
        self.distributed = Distributed.from_environment()
        self.device = self.distributed.device(resolve_device(config.device))
        check_precision(config.precision, self.device)
        self.distributed.join(self.device)
        seed_everything(config.seed)
        registry.resolve("architecture", config.arch)  # an unknown name or option fails with its own message
        try:
            arch = registry.build("architecture", config.arch, shape=shape, z_dim=config.z_dim)
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
        self.generator, self.discriminator = networks
        for regularizer in self.regularizers:
            regularizer.check(generator=self.generator, discriminator=self.discriminator, loss=self.loss)
            regularizer.prepare(generator=self.generator, discriminator=self.discriminator)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        self._check_shapes(arch.component.qualified_name)

        # Record the resolved specs (with converted options) in the config written to the run.
        config.arch, config.loss, config.data = arch.spec, loss.spec, data.spec
        config.reg = [built.spec for built in regularizers]
        if config.image_size is None and len(shape) == 3:
            config.image_size = shape[-1]
        self.components = {
            "architecture": arch.component,
            "loss": loss.component,
            "data": data.component,
            **{f"regularizer.{i}": b.component for i, b in enumerate(regularizers)},
        }

        self.optimizer_d = make_optimizer(
            config.optimizer, self.discriminator.parameters(), lr=config.lr_d or config.lr, betas=config.betas
        )
        self.optimizer_g = make_optimizer(
            config.optimizer, self.generator.parameters(), lr=config.lr_g or config.lr, betas=config.betas
        )
        self.batches = BatchStream(
            self.source, config.batch_size, seed=config.seed, device=self.device,
            rank=self.distributed.rank, world_size=self.distributed.world_size,
        )
        # Separate generators keep the noise stream and the fixed sample noise independent of the networks.
        self.noise = torch.Generator(device=self.device).manual_seed(config.seed)
        fixed = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_noise = torch.randn(SAMPLE_COUNT, config.z_dim, generator=fixed).to(self.device)
        self._prepare_step_networks()
        # Generator EMA (after the memory-layout change, so the copy matches) and evaluation during training.
        self.ema = GeneratorEMA(self.generator, config.ema) if config.ema else None
        self.evaluator = build_training_evaluator(self)

    def _check_before_data(self) -> int:
        """Check the architecture against the data's planned shape before any data is decoded, and return the
        bytes the networks will take in training (0 when the data source cannot tell its shape before building).

        The networks are built on the meta device: no memory, no random draws, so seeded runs are unchanged.
        """
        config = self.config
        component, options = self.registry.resolve("data", config.data)
        planned = getattr(component.factory, "planned_shape", None)
        if planned is None:
            return 0
        shape = planned(
            root=config.data_root, image_size=config.image_size, seed=config.seed, cache=config.data_cache, **options
        )
        if not shape:
            return 0
        shape = tuple(int(s) for s in shape)
        arch, arch_options = self.registry.resolve("architecture", config.arch)
        try:
            with torch.device("meta"):
                networks = arch.factory(shape=shape, z_dim=config.z_dim, **arch_options)
        except GankitError as error:
            raise GankitError(
                f"architecture {config.arch!r} for data {component.name!r} of shape {shape}: {error}"
            ) from None
        except Exception:  # a factory that cannot build on the meta device: the real build reports its own errors
            return 0
        modules = networks if isinstance(networks, tuple) else ()
        parameters = sum(p.numel() for module in modules if isinstance(module, nn.Module) for p in module.parameters())
        return parameters * PARAMETER_BYTES

    def _prepare_step_networks(self) -> None:
        """The modules and settings the training step runs with: memory layout, DDP, torch.compile, scalers.

        ``self.generator`` and ``self.discriminator`` stay the plain modules (checkpoints, samples); the step
        modules below wrap them and share their parameters.
        """
        config = self.config
        configure_backends(self.device)
        self.channels_last = config.channels_last and len(self.shape) == 3
        if self.channels_last:
            to_channels_last(self.generator)
            to_channels_last(self.discriminator)
        self.step_generator = self.distributed.wrap(self.generator, self.device)
        self.step_discriminator = self.distributed.wrap(self.discriminator, self.device)
        # The generator update needs gradients with respect to D's input only, so it calls D outside DDP:
        # no all-reduce for D's weights, and every rank runs the same backward.
        self.frozen_discriminator = self.discriminator
        if config.compile:
            self.step_generator = compile_module(self.step_generator)
            self.step_discriminator = compile_module(self.step_discriminator)
            self.frozen_discriminator = compile_module(self.frozen_discriminator)
        # One loss scaler per network (fp16 only): their gradients have unrelated magnitudes.
        self.scaler_d = make_grad_scaler(config.precision, self.device)
        self.scaler_g = make_grad_scaler(config.precision, self.device)

    def autocast(self):
        """The precision context of forward passes and losses (nothing for fp32)."""
        return autocast(self.config.precision, self.device)

    def _check_shapes(self, name: str) -> None:
        # A dry run in eval mode on zeros: catches a wrong architecture before any training, changes nothing.
        self.generator.eval()
        self.discriminator.eval()
        try:
            with torch.no_grad():
                fake = self.generator(torch.zeros(2, self.config.z_dim, device=self.device))
                if tuple(fake.shape) != (2, *self.shape):
                    raise GankitError(
                        f"architecture {name!r} generates shape {tuple(fake.shape[1:])}, the data has {self.shape}"
                    )
                scores = self.discriminator(fake)
                if tuple(scores.shape) != (2,):
                    raise GankitError(
                        f"architecture {name!r}: the discriminator must return one raw score per example "
                        f"(shape (N,)), got {tuple(scores.shape)}"
                    )
        except GankitError:
            raise
        except Exception as error:
            raise GankitError(f"architecture {name!r} cannot process data of shape {self.shape}: {error}") from None
        finally:
            self.generator.train()
            self.discriminator.train()

    # -- training --------------------------------------------------------------------------------

    def d_steps_at(self, step: int) -> int:
        """Discriminator updates before generator update number ``step`` (0-based): the loss's or regularizers'
        ``discriminator_steps``, adjusted by the ``--d-steps-boost*`` settings (gankit/schedule.py)."""
        return self.schedule(step)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One generator update and its discriminator updates; returns detached statistics (no host sync)."""
        config, G, D = self.config, self.step_generator, self.step_discriminator
        d_steps = self.d_steps_at(step)
        fresh_noise = config.generator_noise == "fresh"
        for d_step in range(d_steps):
            real = self.batches.next()
            if self.channels_last:
                real = batch_to_channels_last(real)
            z = self.distributed.draw_noise(real.shape[0], config.z_dim, device=self.device, generator=self.noise)
            reused = d_step == d_steps - 1 and not fresh_noise
            # Only a fake batch the generator update reuses needs a graph.
            with torch.set_grad_enabled(reused), self.autocast():
                fake = G(z)
            with self.autocast():
                real_scores = D(real)
                fake_scores = D(fake.detach())
                d_loss = self.loss.discriminator_loss(real_scores, fake_scores)
                for regularizer in self.regularizers:
                    # The plain module: penalties may differentiate twice, which DDP and compile do not support.
                    penalty = regularizer.penalty(
                        discriminator=self.discriminator, real=real, fake=fake.detach(), real_scores=real_scores,
                        fake_scores=fake_scores, step=step,
                    )
                    if penalty is not None:
                        d_loss = d_loss + penalty
            self.optimizer_d.zero_grad(set_to_none=True)
            backward_and_step(d_loss, self.optimizer_d, self.scaler_d, config.grad_clip_norm)
            for regularizer in self.regularizers:
                regularizer.after_discriminator_step(discriminator=self.discriminator)

        if fresh_noise:
            z = self.distributed.draw_noise(config.batch_size, config.z_dim, device=self.device, generator=self.noise)
            with self.autocast():
                fake = G(z)
        # Generator update; D's weights are frozen so no gradient is computed for them.
        self.discriminator.requires_grad_(False)
        with self.autocast():
            if self.generator_step_scores_real:
                # Scores of the current D on the batch its last update saw; only for losses that compare with them.
                g_loss = self.loss.generator_loss(
                    self.frozen_discriminator(fake), real_scores=self.frozen_discriminator(real)
                )
            else:
                g_loss = self.loss.generator_loss(self.frozen_discriminator(fake))
        self.optimizer_g.zero_grad(set_to_none=True)
        backward_and_step(g_loss, self.optimizer_g, self.scaler_g, config.grad_clip_norm)
        if self.ema is not None:
            self.ema.update(self.generator)
        self.discriminator.requires_grad_(True)

        with torch.no_grad():
            stats = {
                "d_loss": d_loss.detach(),
                "g_loss": g_loss.detach(),
                "score_real": real_scores.detach().mean(),
                "score_fake": fake_scores.detach().mean(),
            }
            stats.update({k: v.detach() for k, v in self.loss.statistics(real_scores.detach(), fake_scores.detach()).items()})
        return stats

    def train(self, out: str | Path) -> Path:
        """Train until ``config.steps`` generator updates, writing the run directory ``out``; returns it.

        SIGINT/SIGTERM end the current step, write a checkpoint and raise ``TrainingInterrupted``.
        """
        with self.stop_request:
            loggers = open_loggers(self, out)
            try:
                return self._train_loop(out)
            finally:
                # Also after an interruption or an error: the loss plot and GIF of what was trained so far.
                close_run(self, loggers)

    def _train_loop(self, out: str | Path) -> Path:
        config = self.config
        self.out = Path(out)
        if self.distributed.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / "config.toml", config.to_toml())  # a kill must not cut it: resume reads it
        self.listeners.insert(0, MetricsLog(self.out / "metrics.jsonl"))
        self._prepare_checkpoints()
        self._emit(RunStarted(
            self.step, total_steps=config.steps, out=self.out, device=str(self.device), config=config.as_dict(),
            resumed_from=self.resumed_from,
        ))

        interval_start = time.perf_counter()
        images = 0
        while self.step < config.steps:
            images += config.batch_size * self.distributed.world_size * self.d_steps_at(self.step)
            self._apply_lr_decay(self.step)
            stats = self.train_step(self.step)
            totals = self.interval_totals
            for key, value in stats.items():
                totals[key] = totals[key] + value if key in totals else value.clone()
            self.interval_count += 1
            self.step += 1
            last = self.step == config.steps
            # An evaluation step writes a checkpoint too, so that the best one can be kept.
            checkpoint_due = self.step % config.checkpoint_every == 0 or last or self.eval_due()
            logged = self.step % config.log_every == 0 or checkpoint_due
            if logged:
                elapsed = time.perf_counter() - interval_start
                # One host sync per logged interval, not per step; every rank logs the mean over the ranks.
                totals = self.distributed.mean_across_ranks(totals)
                count = self.interval_count
                values = {key: round(float(value) / count, 6) for key, value in totals.items()}
                self._emit(StepLogged(
                    self.step, values=values, images_per_second=round(images / elapsed, 2) if elapsed > 0 else None,
                    interval_steps=count,
                ))
                self.interval_totals, self.interval_count, images = {}, 0, 0
                interval_start = time.perf_counter()
                if self._guard_logged_interval(values, count):
                    continue  # rolled back to a checkpoint: nothing of this step is written
            if (self.step % config.sample_every == 0 or checkpoint_due) and self._guard_weights():
                continue
            if self.distributed.is_main and self.eval_due():
                self._emit(self.evaluator.evaluate(self))
            # Rank 0 alone writes samples and checkpoints (the weights are the same on every rank).
            if self.distributed.is_main and (self.step % config.sample_every == 0 or last):
                self._emit(SamplesWritten(self.step, path=self.write_samples()))
            if self.distributed.is_main and checkpoint_due:
                self._emit(CheckpointWritten(self.step, path=self.write_checkpoint()))
            # Under torchrun every rank must stop at the same step, or the others wait in a collective forever. The
            # vote is a collective and a host sync, so ranks take it at logged steps (where they sync anyway); a
            # single process checks every step at no cost.
            vote_due = logged or not self.distributed.enabled
            if vote_due and self.distributed.any_rank(self.stop_request.requested, self.device):
                self._stop_on_signal(checkpoint_written=checkpoint_due)
        self._emit(RunFinished(self.step, out=self.out))
        return self.out

    # -- outputs ---------------------------------------------------------------------------------

    def lr_factor(self, step: int) -> float:
        """The learning-rate factor of update ``step`` (0-based): 1, then linearly towards 0 over the last
        ``lr_decay`` fraction of the run (the last update gets ``1 / decay_steps``, never 0)."""
        decay_steps = round(self.config.lr_decay * self.config.steps)
        if decay_steps <= 0 or step < 0:
            return 1.0
        return min(1.0, (self.config.steps - step) / decay_steps)

    def _apply_lr_decay(self, step: int) -> None:
        # Scaled by the ratio to the previous step's factor, not set from the configured rate: rollbacks lower the
        # rates too, and a resumed optimizer's state already holds the rate decayed up to its step.
        ratio = self.lr_factor(step) / self.lr_factor(step - 1)
        if ratio != 1.0:
            for optimizer in (self.optimizer_d, self.optimizer_g):
                for group in optimizer.param_groups:
                    group["lr"] *= ratio

    def eval_due(self) -> bool:
        """Whether the metric is evaluated after this step: every ``eval_every`` steps and at the last."""
        return self.evaluator is not None and (
            self.step % self.config.eval_every == 0 or self.step == self.config.steps
        )

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples and metrics use: the EMA copy when ``--ema`` is on."""
        return self.ema.module if self.ema is not None else self.generator

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        """Samples from the generator (its EMA when on) in eval mode (normalisation uses running statistics)."""
        if self.ema is not None:
            with torch.no_grad():
                return self.ema.module(noise)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.no_grad():
                return self.generator(noise)
        finally:
            self.generator.train(was_training)

    def write_samples(self) -> Path:
        samples = self.generate(self.fixed_noise)
        path = self.out / "samples" / f"step-{self.step:07d}.png"
        if samples.dim() == 4:
            return save_grid(samples, path, nrow=8)
        # Vector data: more points than a grid holds, from noise fixed by the seed; .npy, and a scatter PNG in 2-D.
        fixed = torch.Generator().manual_seed(self.config.seed + 1)
        noise = torch.randn(VECTOR_SAMPLE_COUNT, self.config.z_dim, generator=fixed)
        reference = self.batches.data[:VECTOR_SAMPLE_COUNT].cpu() if self.batches.data is not None else None
        return write_vector_samples(self.generate(noise.to(self.device)), path, reference=reference)

    def checkpoint_modules(self) -> list[tuple[str, Any]]:
        """``(prefix, module)`` pairs whose ``state_dict()`` tensors a checkpoint holds and resume loads strictly.

        Extend this list (e.g. an EMA copy of the generator) to put more networks in checkpoints.
        """
        modules = [("generator", self.generator), ("discriminator", self.discriminator)]
        if self.ema is not None:
            modules.append(("generator_ema", self.ema.module))
        return modules

    def checkpoint_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        """The optimizers, by checkpoint prefix (a divergence rollback lowers their learning rates)."""
        return [("optimizer_d", self.optimizer_d), ("optimizer_g", self.optimizer_g)]

    def checkpoint_states(self) -> list[tuple[str, Any]]:
        """``(prefix, object)`` pairs with ``state_dict()``/``load_state_dict()`` of tensors and JSON values
        (optimizers, loss scalers) that a checkpoint holds; extend it for more training state."""
        states = list(self.checkpoint_optimizers())
        if self.ema is not None:
            states.append(("ema", self.ema))
        for name in ("scaler_d", "scaler_g"):
            scaler = getattr(self, name, None)
            if scaler is not None and hasattr(scaler, "state_dict"):
                states.append((name, scaler))
        return states

    def checkpoint_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            "rng.torch": torch.get_rng_state(),
            "rng.noise": self.noise.get_state(),
            **prefixed("interval", self.interval_totals),
        }
        for prefix, module in self.checkpoint_modules():
            tensors.update(prefixed(prefix, module.state_dict()))
        states = {}
        for prefix, stateful in self.checkpoint_states():
            state_tensors, states[prefix] = split_state(prefix, stateful.state_dict())
            tensors.update(state_tensors)
        if torch.cuda.is_available():
            for index, state in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{index}"] = state
        metadata = {
            "gankit_version": __version__,
            "step": self.step,
            "shape": list(self.shape),
            "z_dim": self.config.z_dim,
            "config": self.config.as_dict(),
            "components": {
                key: {"name": c.name, "plugin": c.plugin, "version": self._plugin_version(c.plugin)}
                for key, c in self.components.items()
            },
            "states": states,
            "batches": self.batches.state_dict(),
            "rng_python": _python_rng_state(),
            "interval": {"count": self.interval_count},
            "guard": self.guard.state_dict(),
            "data_fingerprint": self.data_fingerprint,  # resume warns when the data changed since
        }
        return tensors, metadata

    def _plugin_version(self, plugin: str) -> str:
        info = self.registry.plugins.infos.get(plugin)
        return info.version if info else "?"

    def write_checkpoint(self) -> Path:
        """Write this step's checkpoint (atomically), keeping the newest ``keep_checkpoints`` and the best."""
        tensors, metadata = self.checkpoint_tensors()
        return self.keeper.write(self.step, tensors, metadata)

    # -- reliability: checkpoints folder, divergence guard, signals (docs/reliability.md) ----------

    def _prepare_checkpoints(self) -> None:
        folder = self.out / "checkpoints"
        self.keeper.folder = folder
        if self.distributed.is_main:
            remove_partial_writes(folder)
            # A rollback needs somewhere to go back to, even before the first regular checkpoint.
            if self.config.on_divergence == "rollback" and not list_checkpoints(folder):
                self.write_checkpoint()

    def _guard_logged_interval(self, values: dict[str, float], interval_steps: int) -> bool:
        """Check a logged interval; True when the run was rolled back (a divergence that stops raises)."""
        problem = self.guard.inspect_record(self.step, values, interval_steps)
        return problem is not None and self.guard.handle(self, problem)

    def _named_weights(self) -> list[tuple[str, torch.Tensor]]:
        return [
            (f"{prefix}.{name}", tensor)
            for prefix, module in self.checkpoint_modules()
            for name, tensor in module.state_dict().items()
        ]

    def _guard_weights(self) -> bool:
        """Check the weights before anything is written from them; True when the run was rolled back."""
        problem = self.guard.inspect_weights(self._named_weights())
        return problem is not None and self.guard.handle(self, problem)

    def _stop_on_signal(self, *, checkpoint_written: bool) -> None:
        path = None
        if checkpoint_written:
            path = list_checkpoints(self.out / "checkpoints")[-1]
        elif self.distributed.is_main and not nonfinite_tensors(self._named_weights()):
            path = self.write_checkpoint()
            self._emit(CheckpointWritten(self.step, path=path))
        else:  # weights gone bad since the last check: never checkpoint them; point at the last good one
            found = list_checkpoints(self.out / "checkpoints")
            path = found[-1] if found else None
        signal_name = self.stop_request.requested or "a signal to another rank"
        raise TrainingInterrupted(signal_name, self.step, path, self.out, total=self.config.steps)

    def _emit(self, event: Event) -> None:
        if not self.distributed.is_main:
            return  # listeners (metrics log, progress display) run on rank 0 only
        for listener in self.listeners:
            listener(event)


def _data_fingerprint(source: DataSource, name: str) -> str | None:
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


def _python_rng_state() -> list:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]
