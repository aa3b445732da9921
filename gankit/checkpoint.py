"""Checkpoints: safetensors files with JSON metadata, written atomically; never a pickle.

A checkpoint holds tensors under dotted prefixes (``generator.``, ``discriminator.``, ``optimizer_g.``...)
and one JSON document in the safetensors header under the key ``gankit``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from gankit.errors import GankitError

FORMAT = "gankit-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: temporary file, flush and fsync, rename, fsync of the folder.

    A crash at any moment leaves either the previous file or the new one, never a partial file.
    """
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Clone to contiguous CPU tensors: safetensors refuses views that share memory.
    prepared = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in tensors.items()}
    header = {"format": FORMAT, "version": str(FORMAT_VERSION), "gankit": json.dumps(metadata)}
    payload = save(prepared, metadata=header)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without folder descriptors
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(descriptor)


def _refuse_pickle(path: Path, head: bytes) -> None:
    if head.startswith(b"PK") or head[:1] == b"\x80":
        raise GankitError(
            f"{path} is a pickle (torch.save) file; gankit reads only its own safetensors checkpoints "
            "and never unpickles a file"
        )


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's tensors and metadata; any problem is a one-line GankitError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise GankitError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise GankitError(f"{path} is a folder, not a checkpoint file")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise GankitError(f"cannot read checkpoint {path}: {error.strerror}") from None
    _refuse_pickle(path, head)
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
    except Exception as error:  # safetensors raises several types for damaged files
        raise GankitError(f"checkpoint {path} is truncated or corrupted ({type(error).__name__})") from None
    if header.get("format") != FORMAT:
        raise GankitError(f"{path} is a safetensors file but not a gankit checkpoint")
    try:
        metadata = json.loads(header["gankit"])
    except (KeyError, json.JSONDecodeError):
        raise GankitError(f"checkpoint {path} has damaged metadata") from None
    return tensors, metadata


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {name[len(start) :]: tensor for name, tensor in tensors.items() if name.startswith(start)}


def optimizer_state(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer ``state_dict()`` into tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def restore_optimizer_state(prefix: str, tensors: dict[str, torch.Tensor], document: dict) -> dict:
    """Rebuild an optimizer ``state_dict()`` from :func:`optimizer_state`'s two parts."""
    state: dict[int, dict[str, Any]] = {}
    start = prefix + ".state."
    for name, tensor in tensors.items():
        if name.startswith(start):
            index, key = name[len(start) :].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    for index, values in document["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": document["param_groups"]}


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """A run's checkpoints, oldest first (temporary files from an interrupted write are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*.safetensors") if not p.name.startswith("."))


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if not found:
            raise GankitError(f"no checkpoint in {path}")
        return found[-1]
    return path
