"""A checkpoint's discriminator as an estimate of ``log p_data(x) / p_g(x)``, for the samplers that use it:
discriminator rejection sampling (``--drs``, gankit/rejection.py) and latent refinement (``--refine``,
gankit/refinement.py).

The run's loss says whether its discriminator estimates the ratio (``Loss.log_density_ratio``); the
discriminator is rebuilt from the checkpoint as the run built it. Everything it cannot do is refused in one line
that names the option asking for it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gankit.errors import GankitError, shortened


def load_density_ratio(metadata: dict, *, option: str, device="cpu",
                       registry=None) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """``(discriminator, log_ratio)`` for the checkpoint a generator was loaded from
    (``gankit.inference.load_generator``'s metadata): the discriminator in eval mode on ``device``, and the
    run's loss's map from its scores ``(N,)`` to the estimate ``r(x)``.

    Refused in one line (``option``, e.g. ``"--drs"``, names what asked): a conditional run, a loss whose
    discriminator estimates no density ratio, a checkpoint without the discriminator's weights (or with
    non-finite ones).
    """
    from gankit.registry import default_registry

    registry = registry or default_registry()
    path = Path(metadata["path"])
    if metadata.get("num_classes") is not None:
        raise GankitError(f"{option} samples unconditional runs; {shortened(str(path))} is of a conditional run")
    log_ratio = _log_ratio(metadata, option=option, registry=registry)
    discriminator = _discriminator(path, metadata, option=option, registry=registry)
    return discriminator.to(device).eval(), log_ratio


def _log_ratio(metadata: dict, *, option: str, registry) -> Callable[[torch.Tensor], torch.Tensor]:
    from gankit.components import Loss

    config = metadata.get("config", {})
    loss = registry.build("loss", registry.recorded_spec("loss", config.get("loss", "bce"), metadata))
    if not isinstance(loss.value, Loss) or loss.value.discriminator_outputs:
        raise GankitError(f"{option}: the discriminator of loss {loss.component.name!r} estimates no density ratio")
    if loss.value.log_density_ratio(torch.zeros(1)) is None:
        raise GankitError(
            f"{option} needs a discriminator that estimates the density ratio (loss bce, or least-squares with its "
            f"default labels); this run trained with {loss.component.name!r}"
        )
    return loss.value.log_density_ratio


def _discriminator(path: Path, metadata: dict, *, option: str, registry) -> nn.Module:
    from gankit.checkpoint import load_checkpoint, require_finite, unprefixed
    from gankit.inference import load_state

    tensors, _ = load_checkpoint(path)
    state = unprefixed("discriminator", tensors)
    if not state:
        raise GankitError(f"{option} needs the discriminator's weights, which checkpoint {shortened(str(path))} lacks")
    require_finite(path, tensors, ("discriminator",))
    config = metadata.get("config", {})
    arch_spec = registry.recorded_spec("architecture", config["arch"], metadata)
    spare_generator, discriminator = registry.build(
        "architecture", arch_spec, shape=tuple(metadata["shape"]), z_dim=int(metadata["z_dim"])
    ).value
    # Regularizers may reshape the discriminator's parameters (spectral norm): prepared as the run was, with a
    # spare generator, so that the one loaded for sampling is left as it is.
    for index, spec in enumerate(config.get("reg") or []):
        regularizer = registry.build(
            "regularizer", registry.recorded_spec("regularizer", spec, metadata, key=f"regularizer.{index}")
        ).value
        regularizer.prepare(generator=spare_generator, discriminator=discriminator)
    load_state(discriminator, state, f"discriminator of {path}")
    return discriminator
