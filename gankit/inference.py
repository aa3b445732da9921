"""Using a trained generator: rebuild it from a checkpoint and draw samples (after checking they fit in memory)."""
from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.checkpoint import DamagedCheckpoint, load_checkpoint, newest_loadable_checkpoint, require_finite, unprefixed
from gankit.config import check_seed
from gankit.errors import GankitError, GankitWarning, shortened
from gankit.memory import available_bytes, describe_bytes
from gankit.registry import Registry, default_registry


def _warn(message: str) -> None:
    warnings.warn(message, GankitWarning, stacklevel=3)


def load_generator(path: str | Path, *, registry: Registry | None = None, device: str = "cpu", ema: bool = True,
                   warn: Callable[[str], None] | None = None):
    """The generator of a checkpoint (a file, or a run folder's newest usable one), in eval mode, and its metadata.

    A checkpoint of a run with ``--ema`` holds the averaged generator too; it is used unless ``ema`` is False
    (``metadata["ema_used"]`` says which weights were loaded). In a run folder, a newest checkpoint that
    cannot be used is skipped with a one-line ``warn``; a file named directly is used or refused.
    """
    registry = registry or default_registry()
    path = Path(path)
    usable = functools.partial(_check_sampleable, ema=ema)
    if path.is_dir():
        path, tensors, metadata = newest_loadable_checkpoint(path, warn or _warn, usable=usable)
    else:
        tensors, metadata = load_checkpoint(path)
        usable(path, tensors, metadata)
    try:
        spec = registry.recorded_spec("architecture", metadata["config"]["arch"], metadata)
        shape = tuple(metadata["shape"])
        z_dim = int(metadata["z_dim"])
    except (KeyError, TypeError, ValueError):
        raise GankitError(f"checkpoint {path} lacks the architecture, shape or z_dim in its metadata") from None
    averaged = unprefixed("generator_ema", tensors) if ema else {}
    state, what = (averaged, f"EMA generator of {path}") if averaged else (unprefixed("generator", tensors), f"generator of {path}")
    build = functools.partial(registry.build, "architecture", spec, shape=shape, z_dim=z_dim)
    _check_fit_without_memory(build, state, what)
    generator, _ = build().value
    load_state(generator, state, what)
    generator.to(device).eval()
    metadata = {**metadata, "ema_used": bool(averaged), "path": str(path)}
    return generator, metadata


def _check_fit_without_memory(build: Callable[[], Any], state: dict[str, torch.Tensor], what: str) -> None:
    # A damaged z_dim or shape (1e7) would make the real build allocate tens of GB before load_state could
    # object. Built on the meta device, the networks take no memory and their shapes are compared first.
    try:
        with torch.device("meta"):
            skeleton, _ = build().value
    except Exception:  # a plugin's factory may not support the meta device: the real build decides
        return
    load_state(skeleton, state, what, check_only=True)


def _check_sampleable(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, ema: bool) -> None:
    # load_checkpoint has checked the types of the entries present; these must be present too.
    if "arch" not in metadata.get("config", {}) or "shape" not in metadata or "z_dim" not in metadata:
        raise DamagedCheckpoint(f"checkpoint {path} lacks the architecture, shape or z_dim in its metadata")
    weights = "generator_ema" if ema and unprefixed("generator_ema", tensors) else "generator"
    # NaN weights would sample an all-black picture and exit 0.
    require_finite(path, tensors, (weights,))


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, *, check_only: bool = False) -> None:
    """Load a state dict strictly, turning a mismatch into one line that names the difference (``check_only``:
    compare names, shapes and dtypes, load nothing)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        raise GankitError(f"{what} does not match the architecture: {'; '.join(parts)}")
    for name, tensor in state.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise GankitError(
                f"{what} does not match the architecture: {name} has shape {tuple(tensor.shape)} "
                f"in the checkpoint, {tuple(own[name].shape)} in the network"
            )
        if _dtype_kind(own[name]) != _dtype_kind(tensor):  # load_state_dict would cast, e.g. bool to weights
            raise GankitError(
                f"{what} does not match the architecture: {name} has dtype {tensor.dtype} in the checkpoint, "
                f"{own[name].dtype} in the network"
            )
    if not check_only:
        module.load_state_dict(state)


def _dtype_kind(tensor: torch.Tensor) -> str:
    if tensor.dtype == torch.bool:
        return "bool"
    return "floating" if tensor.is_floating_point() else "integer"


def sample(path: str | Path, count: int, *, seed: int = 0, device: str = "cpu", registry: Registry | None = None,
           ema: bool = True):
    """``count`` samples from a checkpoint's generator, as a CPU tensor ``(count, *shape)``."""
    check_count(count)
    check_seed(seed)
    generator, metadata = load_generator(path, registry=registry, device=device, ema=ema)
    return draw_checked(generator, metadata, count, seed=seed, device=device)


def draw_checked(generator, metadata: dict, count: int, *, seed: int, device, extra_bytes_per_sample: int = 0):
    """``count`` samples from a loaded generator once the count, the seed and the memory they need (with
    ``extra_bytes_per_sample`` the caller needs to use each, e.g. to encode it) are checked."""
    check_count(count)
    check_seed(seed)
    z_dim = int(metadata["z_dim"])
    check_memory(count, sample_bytes(metadata["shape"], z_dim) + extra_bytes_per_sample, "samples")
    return draw_samples(generator, z_dim, count, seed=seed, device=device)


def check_count(count: int, label: str = "the number of samples (-n)") -> int:
    if count <= 0:
        raise GankitError(f"{label} must be positive, got {shortened(count)}")
    return count


def sample_bytes(shape, z_dim: int) -> int:
    """Memory one drawn sample holds: its float32 values and its noise vector."""
    return 4 * (math.prod(int(d) for d in shape) + int(z_dim))


def check_memory(count: int, per_item: int, what: str, *, flag: str = "-n") -> None:
    """Refuse, before allocating anything, ``count`` items of ``per_item`` bytes each that need more memory
    than the machine has available (``what`` names the items, ``flag`` the option that sets their number)."""
    available = available_bytes()
    need = count * per_item
    if available is None or need <= available:
        return
    raise GankitError(
        f"{shortened(f'{count:,}')} {what} need about {describe_bytes(need)} of memory, but only {describe_bytes(available)} is "
        f"available; about {available // per_item:,} would fit, ask for fewer with {flag}"
    )


def draw_samples(generator: torch.nn.Module, z_dim: int, count: int, *, seed: int, device,
                 batch_size: int = 500) -> torch.Tensor:
    """``count`` samples on the CPU from fixed noise (``seed``), drawn in batches without gradients."""
    noise = torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            return torch.cat([generator(batch.to(device)).float().cpu() for batch in noise.split(batch_size)])
    finally:
        generator.train(was_training)
