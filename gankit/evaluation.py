"""Scoring generators with metric plugins: ``gankit eval`` on a checkpoint, and evaluation during training
(``--eval-every N --metric NAME``), which logs to ``eval.jsonl`` and keeps the best checkpoint."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from gankit.components import Metric
from gankit.errors import GankitError
from gankit.events import EvaluationDone
from gankit.inference import check_count, check_memory, draw_samples, load_generator, sample_bytes
from gankit.registry import Built, Registry, default_registry

BEST_CHECKPOINT = "best.safetensors"
EVAL_LOG = "eval.jsonl"


def build_metric(registry: Registry, spec: str, *, shape, data, device: str = "cpu",
                 weights: str | None = None) -> Built:
    """Build and check a metric for data of ``shape``; ``weights`` (a file) goes to metrics that take it."""
    context: dict[str, Any] = {"device": str(device)}
    if weights is not None:
        component, options = registry.resolve("metric", spec)
        from gankit.options import signature_parameters

        params, _ = signature_parameters(component.factory)
        if "weights" not in params:
            raise GankitError(f"metric {component.name!r} takes no weights file")
        if "weights" in options:
            raise GankitError("weights are given twice: with --weights and in the metric's options")
        context["weights"] = weights
    built = registry.build("metric", spec, **context)
    if not isinstance(built.value, Metric):
        raise GankitError(f"metric {built.component.qualified_name!r} did not build a gankit.components.Metric")
    built.value.check(shape=tuple(shape), data=data)
    return built


def score(metric: Metric, generator, z_dim: int, *, data, count: int | None = None, seed: int = 0,
          device="cpu", num_classes: int | None = None, pass_labels: bool | None = None) -> dict[str, float]:
    """The metric's values for ``count`` samples from fixed noise. A conditional generator (``num_classes``)
    draws balanced labels ``arange(count) % num_classes``; they go to ``metric.evaluate`` when it takes
    ``labels`` (``pass_labels``, looked up when None)."""
    count = check_count(metric.sample_count if count is None else count)
    labels = None if num_classes is None else torch.arange(count, dtype=torch.int64) % num_classes
    samples = draw_samples(generator, z_dim, count, seed=seed, device=device, labels=labels)
    if labels is not None and (takes_labels(metric) if pass_labels is None else pass_labels):
        values = metric.evaluate(samples, data=data, labels=labels)
    else:
        values = metric.evaluate(samples, data=data)
    if metric.key not in values:
        raise GankitError(f"metric {type(metric).__name__} did not report its headline value {metric.key!r}")
    return {key: float(value) for key, value in values.items()}


def takes_labels(metric: Metric) -> bool:
    """Whether ``metric.evaluate`` accepts ``labels`` (metrics written before conditional runs do not)."""
    from gankit.options import signature_parameters

    params, takes_kwargs = signature_parameters(metric.evaluate)
    return takes_kwargs or "labels" in params


def evaluate_checkpoint(path: str | Path, metric_spec: str, *, count: int | None = None, seed: int = 0,
                        device: str = "cpu", weights: str | None = None, registry: Registry | None = None,
                        ema: bool = True, drs: float | None = None, refine: int | None = None,
                        refine_rate: float | None = None) -> dict:
    """Score a checkpoint (a file, or a run folder's newest) with a metric; the EMA generator when it has one.

    The data source is rebuilt from the checkpoint's config, for metrics that compare with the real data.
    ``drs``: score the samples that pass discriminator rejection sampling with this exponent (``"drs"`` and
    ``"acceptance"`` in the result say so). ``refine``: score the samples after this many steps of latent
    refinement with step size ``refine_rate`` (``"refine"`` and ``"refine_rate"`` in the result).
    """
    from gankit.config import check_seed

    if count is not None:  # 0 is a mistake, not "the metric's default"
        check_count(count)
    check_seed(seed)
    registry = registry or default_registry()
    generator, metadata = load_generator(path, registry=registry, device=device, ema=ema)
    from gankit.refinement import settings

    refinement = settings(refine, refine_rate, drs=drs)
    generator = _sampler(generator, metadata, drs=drs, refinement=refinement, seed=seed, device=device,
                         registry=registry)
    if count is not None:  # the samples alone; a metric needs some memory of its own besides
        check_memory(count, sample_bytes(metadata["shape"], metadata["z_dim"]), "samples")
    config = metadata.get("config", {})
    data = registry.build(
        "data", registry.recorded_spec("data", config.get("data", "digits:digits"), metadata), root=config.get("data_root"), image_size=config.get("image_size"),
        seed=config.get("seed", 0), cache=config.get("data_cache", True),
    ).value
    built = build_metric(registry, metric_spec, shape=metadata["shape"], data=data, device=device, weights=weights)
    metric = built.value
    count = metric.sample_count if count is None else count
    values = score(metric, generator, int(metadata["z_dim"]), data=data, count=count, seed=seed, device=device,
                   num_classes=metadata.get("num_classes"))
    return {
        "checkpoint": str(metadata.get("path", path)),
        "step": metadata.get("step"),
        "metric": built.spec,
        "key": metric.key,
        "higher_is_better": metric.higher_is_better,
        "samples": count,
        "ema": bool(metadata.get("ema_used")),
        **({} if drs is None else {"drs": generator.sharpness, "acceptance": generator.acceptance}),
        **({} if not refinement else {"refine": generator.steps, "refine_rate": generator.rate}),
        "values": values,
    }


def _sampler(generator, metadata: dict, *, drs: float | None, refinement: dict, seed: int, device, registry):
    """The generator as scored: behind rejection sampling (``drs``) or latent refinement, or as it is."""
    if drs is not None:
        from gankit.rejection import rejection_sampler

        return rejection_sampler(generator, metadata, sharpness=drs, seed=seed, device=device, registry=registry)
    if refinement:
        from gankit.refinement import latent_refiner

        return latent_refiner(generator, metadata, **refinement, device=device, registry=registry)
    return generator


class TrainingEvaluator:
    """Scores a generator during training with fixed noise, appends the result to ``eval.jsonl``, and returns
    it as the event that the loggers and the checkpoint keeper receive. ``num_classes`` is the class count
    of a conditional run (None otherwise): the generator is then scored on balanced labels."""

    def __init__(self, metric: Built, *, count: int | None, seed: int, data, z_dim: int, device,
                 num_classes: int | None = None) -> None:
        self.built = metric
        self.metric: Metric = metric.value
        self.num_classes = num_classes
        self.pass_labels = num_classes is not None and takes_labels(self.metric)
        self.count = self.metric.sample_count if count is None else count
        self.seed = seed
        self.data = data
        self.z_dim = z_dim
        self.device = device

    def evaluate(self, generator: torch.nn.Module, *, step: int, out: str | Path) -> EvaluationDone:
        values = score(self.metric, generator, self.z_dim, data=self.data, count=self.count, seed=self.seed,
                       device=self.device, num_classes=self.num_classes, pass_labels=self.pass_labels)
        with (Path(out) / EVAL_LOG).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, "metric": self.built.spec, **values}) + "\n")
        return EvaluationDone(
            step, metric=self.built.spec, values=values, key=self.metric.key,
            higher_is_better=self.metric.higher_is_better,
        )


def open_loggers(registry: Registry, specs: list[str], out: str | Path) -> list:
    """The run's ``--logger`` plugins, built for the run folder ``out``."""
    from gankit.components import Logger

    loggers = []
    for spec in specs:
        built = registry.build("logger", spec, out=Path(out))
        if not isinstance(built.value, Logger):
            raise GankitError(f"logger {built.component.qualified_name!r} did not build a gankit.components.Logger")
        loggers.append(built.value)
    return loggers


def close_loggers(loggers) -> None:
    """Close the loggers; one failing to flush must not hide the run's own outcome."""
    for logger in loggers:
        try:
            logger.close()
        except Exception:
            pass
