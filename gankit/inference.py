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
from gankit.errors import GankitError, GankitWarning, quoted, shortened
from gankit.memory import available_bytes, describe_bytes
from gankit.registry import Registry, default_registry


def _warn(message: str) -> None:
    warnings.warn(message, GankitWarning, stacklevel=3)


def load_generator(path: str | Path, *, registry: Registry | None = None, device: str = "cpu", ema: bool = True,
                   warn: Callable[[str], None] | None = None):
    """The generator of a checkpoint (a file, or a run folder's newest usable one), in eval mode, and its metadata.

    A checkpoint of a run with ``--ema`` holds the averaged generator too; it is used unless ``ema`` is False
    (``metadata["ema_used"]`` says which weights were loaded). In a run folder, a newest checkpoint that
    cannot be used is skipped with a one-line ``warn``; a file named directly is used or refused. A checkpoint
    of a conditional run (``num_classes`` in its metadata) gives a generator called ``generator(z, labels)``.
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
    context: dict[str, Any] = {"shape": shape, "z_dim": z_dim}
    if metadata.get("num_classes") is not None:
        _require_conditional_factory(registry, spec, path, metadata["num_classes"])
        context["num_classes"] = metadata["num_classes"]
    build = functools.partial(registry.build, "architecture", spec, **context)
    _check_fit_without_memory(build, state, what)
    generator, _ = build().value
    load_state(generator, state, what)
    generator.to(device).eval()
    metadata = {**metadata, "ema_used": bool(averaged), "path": str(path)}
    return generator, metadata


def _require_conditional_factory(registry: Registry, spec: str, path: Path, num_classes: int) -> None:
    # registry.build leaves out context a factory does not accept: an architecture that cannot condition
    # would be built unconditional and fail later, at the first generator(z, labels) call.
    from gankit.options import signature_parameters

    component, _ = registry.resolve("architecture", spec)
    params, takes_kwargs = signature_parameters(component.factory)
    if not takes_kwargs and "num_classes" not in params:
        raise GankitError(
            f"checkpoint {path} is of a conditional run ({num_classes} classes), but architecture "
            f"{component.qualified_name!r} takes no num_classes; install the version of its plugin that trained it"
        )


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
           ema: bool = True, classes=None):
    """``count`` samples from a checkpoint's generator, as a CPU tensor ``(count, *shape)``.

    For a conditional checkpoint, ``count`` samples per class of ``classes`` (all classes when None), class
    after class: ``(len(classes) * count, *shape)``. ``classes`` given for an unconditional checkpoint is an error.
    """
    check_count(count)
    check_seed(seed)
    generator, metadata = load_generator(path, registry=registry, device=device, ema=ema)
    chosen = resolve_classes(metadata, classes)
    if chosen is None:
        return draw_checked(generator, metadata, count, seed=seed, device=device)
    samples, _ = draw_per_class(generator, metadata, count, chosen, seed=seed, device=device)
    return samples


def draw_checked(generator, metadata: dict, count: int, *, seed: int, device, extra_bytes_per_sample: int = 0):
    """``count`` samples from a loaded generator once the count, the seed and the memory they need (with
    ``extra_bytes_per_sample`` the caller needs to use each, e.g. to encode it) are checked."""
    check_count(count)
    check_seed(seed)
    z_dim = int(metadata["z_dim"])
    check_memory(count, sample_bytes(metadata["shape"], z_dim) + extra_bytes_per_sample, "samples")
    return draw_samples(generator, z_dim, count, seed=seed, device=device)


def draw_per_class(generator, metadata: dict, count: int, classes: list[int], *, seed: int, device,
                   extra_bytes_per_sample: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(samples, labels)``: ``count`` samples of each class in ``classes``, class after class, checked as
    :func:`draw_checked` does. Every class gets the same ``count`` noise vectors, so that sample j of each
    class differs from the others by its class alone."""
    check_count(count)
    check_seed(seed)
    z_dim = int(metadata["z_dim"])
    check_memory(count * len(classes), sample_bytes(metadata["shape"], z_dim) + extra_bytes_per_sample, "samples")
    noise = sample_noise(count, z_dim, seed=seed).repeat(len(classes), 1)
    labels = torch.tensor(classes, dtype=torch.int64).repeat_interleave(count)
    return generate(generator, noise, labels, device=device), labels


# --- classes of a conditional checkpoint --------------------------------------------------------------


def class_names(metadata: dict) -> list[str] | None:
    """The class names of a conditional checkpoint (their indices as text when it names none); None when
    the run was not conditional."""
    count = metadata.get("num_classes")
    if count is None:
        return None
    names = metadata.get("class_names")
    return list(names) if names is not None else [str(index) for index in range(count)]


def resolve_classes(metadata: dict, classes) -> list[int] | None:
    """Class indices from ``classes``: None (every class of a conditional checkpoint, None for an unconditional
    one), an index, a name, text with comma-separated indices or names (``"0,1,2"``), or a sequence of these."""
    names = class_names(metadata)
    if names is None:
        if classes is not None:
            raise GankitError(
                f"the checkpoint {shortened(metadata.get('path', ''))} has no classes (its run was not --conditional); "
                "leave out --class"
            )
        return None
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, str):
        tokens = [classes] if classes in names else classes.split(",")
    elif isinstance(classes, int):
        tokens = [classes]
    else:
        tokens = list(classes)
    if not tokens:
        raise GankitError("no class given: name classes by index or name, e.g. --class 0,1,2")
    chosen = [_class_index(token, names) for token in tokens]
    twice = sorted({index for index in chosen if chosen.count(index) > 1})
    if twice:
        raise GankitError(f"class {names[twice[0]]!r} (index {twice[0]}) is given twice")
    return chosen


def _class_index(token, names: list[str]) -> int:
    # A name wins over an index: every class stays reachable by its name even when names look like indices
    # of other classes (subfolders "1", "10", "2").
    if isinstance(token, bool) or not isinstance(token, (int, str)):
        raise GankitError(f"a class is an index or a name, got {quoted(token)}")
    text = token.strip() if isinstance(token, str) else str(token)
    if text in names:
        return names.index(text)
    if text.isascii() and text.isdigit() and int(text) < len(names):
        return int(text)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} classes)" if len(names) > 12 else "")
    raise GankitError(f"unknown class {quoted(text)}: give an index 0 to {len(names) - 1} or a name ({shortened(shown, 200)})")


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


def sample_noise(count: int, z_dim: int, *, seed: int) -> torch.Tensor:
    """The noise of ``count`` samples for ``seed``: what ``gankit sample -n count --seed seed`` feeds the generator."""
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed))


def draw_samples(generator: torch.nn.Module, z_dim: int, count: int, *, seed: int, device,
                 batch_size: int = 500, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` samples on the CPU from fixed noise (``seed``), drawn in batches without gradients; with
    ``labels`` (int64 ``(count,)``), from a conditional generator."""
    return generate(generator, sample_noise(count, z_dim, seed=seed), labels, device=device, batch_size=batch_size)


def generate(generator: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor | None = None, *, device,
             batch_size: int = 500) -> torch.Tensor:
    """The generator's output for ``noise`` (and ``labels``: ``generator(z, labels)``), on the CPU, in batches
    without gradients and in eval mode."""
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            if labels is None:
                return torch.cat([generator(batch.to(device)).float().cpu() for batch in noise.split(batch_size)])
            return torch.cat([
                generator(batch.to(device), batch_labels.to(device)).float().cpu()
                for batch, batch_labels in zip(noise.split(batch_size), labels.split(batch_size))
            ])
    finally:
        generator.train(was_training)
