"""Using a trained generator: rebuild it from a checkpoint and draw samples (after checking they fit in memory)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from gankit.checkpoint import find_checkpoint, load_checkpoint, unprefixed
from gankit.config import check_seed
from gankit.errors import GankitError, shortened
from gankit.registry import Registry, default_registry


def load_generator(path: str | Path, *, registry: Registry | None = None, device: str = "cpu", ema: bool = True):
    """The generator of a checkpoint (a file, or a run folder's newest), in eval mode, and its metadata.

    A checkpoint of a run with ``--ema`` holds the averaged generator too; it is used unless ``ema`` is False
    (``metadata["ema_used"]`` says which weights were loaded).
    """
    registry = registry or default_registry()
    path = find_checkpoint(path)
    tensors, metadata = load_checkpoint(path)
    try:
        spec = metadata["config"]["arch"]
        shape = tuple(metadata["shape"])
        z_dim = int(metadata["z_dim"])
    except (KeyError, TypeError, ValueError):
        raise GankitError(f"checkpoint {path} lacks the architecture, shape or z_dim in its metadata") from None
    generator, _ = registry.build("architecture", spec, shape=shape, z_dim=z_dim).value
    averaged = unprefixed("generator_ema", tensors) if ema else {}
    if averaged:
        load_state(generator, averaged, f"EMA generator of {path}")
    else:
        load_state(generator, unprefixed("generator", tensors), f"generator of {path}")
    generator.to(device).eval()
    metadata = {**metadata, "ema_used": bool(averaged), "path": str(path)}
    return generator, metadata


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a state dict strictly, turning a mismatch into one line that names the difference."""
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
    module.load_state_dict(state)


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
    from gankit.evaluation import draw_samples

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
    available = available_memory()
    need = count * per_item
    if available is None or need <= available:
        return
    raise GankitError(
        f"{shortened(f'{count:,}')} {what} need about {_human_bytes(need)} of memory, but only {_human_bytes(available)} is "
        f"available; about {available // per_item:,} would fit, ask for fewer with {flag}"
    )


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the system's available memory, capped by a cgroup limit
    (containers); None when neither can be read."""
    candidates = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            candidates.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def _human_bytes(count: int) -> str:
    if count >= 10**21:  # beyond the units below (and beyond a float, for absurd counts)
        return f"10^{len(str(count)) - 1} bytes"
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
