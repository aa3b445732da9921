"""Checkpoints: safetensors files with JSON metadata, written atomically; never a pickle.

A checkpoint holds tensors under dotted prefixes (``generator.``, ``discriminator.``, ``optimizer_g.``...)
and one JSON document in the safetensors header under the key ``gankit``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.errors import GankitError

FORMAT = "gankit-checkpoint"
FORMAT_VERSION = 1
BEST_NAME = "best.safetensors"


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
    return write_atomic(path, payload)


def write_atomic(path: str | Path, content: bytes | str) -> Path:
    """Replace a file so that a kill at any moment leaves the old content or the new, never a mix:
    a temporary file in the same folder, flushed and fsynced, renamed over ``path``, then the folder fsynced.

    Checkpoints use it, and so do the small text files resume reads (config.toml, metrics.jsonl).
    """
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
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


class PickleRefused(GankitError):
    """A pickle (``torch.save``) file was handed to gankit; it is refused without being unpickled."""


class DamagedCheckpoint(GankitError):
    """A checkpoint file that is truncated, corrupted or not a gankit checkpoint."""


# Suffixes of files that are pickles in the PyTorch world; named in messages when a folder holds only these.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def _refuse_pickle(path: Path, head: bytes) -> None:
    # torch.save writes a zip archive ("PK") holding a pickle, or (legacy format) a bare pickle (protocol
    # 2+ starts with 0x80). Both are recognised from their first bytes, never by unpickling. A safetensors
    # header length may start with those bytes too (one in 256 is 0x80 mod 256): its "{" at byte 8 tells it apart.
    if head[8:9] == b"{":
        return
    if head.startswith(b"PK") or head[:1] == b"\x80":
        raise PickleRefused(
            f"{path} is a pickle (torch.save) file; gankit reads only its own safetensors checkpoints "
            "and never unpickles a file"
        )


def _check_safetensors_head(path: Path, head: bytes, size: int) -> None:
    # safetensors: an 8-byte little-endian header length, then a JSON header starting with "{".
    if len(head) < 9:
        raise DamagedCheckpoint(f"checkpoint {path} is truncated ({size} bytes)")
    header_length = int.from_bytes(head[:8], "little")
    if head[8:9] != b"{":
        raise DamagedCheckpoint(f"{path} is not a safetensors checkpoint (unrecognised content)")
    if 8 + header_length > size:
        raise DamagedCheckpoint(f"checkpoint {path} is truncated ({size} bytes, header alone needs {8 + header_length})")


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
        size = path.stat().st_size
    except OSError as error:
        raise GankitError(f"cannot read checkpoint {path}: {error.strerror}") from None
    _refuse_pickle(path, head)
    _check_safetensors_head(path, head, size)
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
    except Exception as error:  # safetensors raises several types for damaged files
        raise DamagedCheckpoint(f"checkpoint {path} is truncated or corrupted ({type(error).__name__})") from None
    if header.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{path} is a safetensors file but not a gankit checkpoint")
    try:
        metadata = json.loads(header["gankit"])
    except (KeyError, json.JSONDecodeError):
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("step"), int):
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata (no step)")
    return tensors, metadata


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {name[len(start) :]: tensor for name, tensor in tensors.items() if name.startswith(start)}


def split_state(prefix: str, state: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a ``state_dict()`` (optimizer, loss scaler, ...) into tensors and a JSON-able document.

    Tensors are stored under ``prefix.<path>`` and replaced in the document by ``{"__tensor__": name}``;
    tuples and dicts with non-string keys (an optimizer's parameter indices) are encoded so that
    :func:`join_state` gives back exactly the same structure.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any, path: list[str]) -> Any:
        if isinstance(value, torch.Tensor):
            name = ".".join([prefix, *path])
            while name in tensors:  # keys containing dots could collide with nested paths
                name += "_"
            tensors[name] = value
            return {"__tensor__": name}
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("__") for key in value):
                return {key: encode(item, [*path, key]) for key, item in value.items()}
            return {"__items__": [[key, encode(item, [*path, str(key)])] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [encode(item, [*path, str(i)]) for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, [*path, str(i)]) for i, item in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise GankitError(f"{prefix}: cannot store a {type(value).__name__} in a checkpoint (tensors and JSON values only)")

    return tensors, encode(state, [])


def join_state(document: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild a state from :func:`split_state`'s two parts."""
    if isinstance(document, dict):
        if "__tensor__" in document:
            name = document["__tensor__"]
            if name not in tensors:
                raise GankitError(f"checkpoint lacks the tensor {name}")
            return tensors[name]
        if "__items__" in document:
            return {_json_key(key): join_state(item, tensors) for key, item in document["__items__"]}
        if "__tuple__" in document:
            return tuple(join_state(item, tensors) for item in document["__tuple__"])
        return {key: join_state(item, tensors) for key, item in document.items()}
    if isinstance(document, list):
        return [join_state(item, tensors) for item in document]
    return document


def _json_key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.safetensors"


def checkpoint_step(path: str | Path) -> int:
    """The step in a checkpoint's file name (``step-0000500.safetensors`` -> 500)."""
    return int(Path(path).name[len("step-") :].split(".", 1)[0])


def list_checkpoints(folder: str | Path) -> list[Path]:
    """A run's checkpoints, oldest first (temporary files from an interrupted write are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step-*.safetensors") if p.name[len("step-") :].split(".", 1)[0].isdigit()]
    return sorted(found, key=checkpoint_step)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if not found:
            raise GankitError(f"no checkpoint in {path}{_pickles_note(path)}")
        return found[-1]
    return path


def _pickles_note(folder: Path) -> str:
    pickles = sorted(
        p.name for where in (folder, folder / "checkpoints") if where.is_dir()
        for p in where.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES
    )
    if not pickles:
        return ""
    return f" (only {', '.join(pickles[:3])}: pickle files, which gankit never loads)"


def newest_loadable_checkpoint(run_dir: str | Path, warn: Callable[[str], None]) -> tuple[Path, dict, dict]:
    """The newest checkpoint of a run that loads: ``(path, tensors, metadata)``.

    A damaged newest file (a disk that filled up, a copy cut short) is skipped with a warning and the
    previous one used. A pickle is never skipped quietly: it is refused, as everywhere.
    """
    run_dir = Path(run_dir)
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise GankitError(f"no checkpoint in {run_dir}{_pickles_note(run_dir)}")
    for path in reversed(found):
        try:
            tensors, metadata = load_checkpoint(path)
        except DamagedCheckpoint as error:
            warn(f"skipping {path.name}: {error}")
            continue
        return path, tensors, metadata
    raise GankitError(f"every checkpoint in {run_dir / 'checkpoints'} is damaged; the run cannot be resumed")


def prune_checkpoints(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (``keep`` 0: keep all); returns those deleted.

    Called only after a new checkpoint is on disk, so a crash in between leaves one more file, never fewer.
    """
    found = list_checkpoints(folder)
    doomed = found[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    if doomed:
        _fsync_folder(Path(folder))
    return doomed


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete temporary files left by a write that was killed before its rename."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


class CheckpointKeeper:
    """Writes a run's checkpoints: the newest ``keep`` (0: all), plus ``best.safetensors`` when a metric is tracked.

    It listens to the trainer's events for the metric; a checkpoint becomes the best when the metric was
    reported at its own step and beats every earlier value (lower is better for ``mode="min"``).
    """

    def __init__(self, folder: str | Path | None, *, keep: int, metric: str | None = None, mode: str = "min") -> None:
        self.folder = Path(folder) if folder is not None else None  # a trainer sets it when training starts
        self.keep = keep
        self.metric = metric
        self.mode = mode
        self.best: dict[str, Any] | None = None  # {"metric", "value", "step"}
        self._latest: tuple[int, float] | None = None

    def __call__(self, event) -> None:
        if self.metric is None:
            return
        value = event.data.get(self.metric) if isinstance(event.data, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self._latest = (event.step, float(value))

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best["value"] if self.mode == "min" else value > self.best["value"]

    def write(self, step: int, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
        candidate = self._latest if self._latest is not None and self._latest[0] == step else None
        better = candidate is not None and self._improves(candidate[1])
        if better:
            self.best = {"metric": self.metric, "value": candidate[1], "step": step}
        metadata = {**metadata, "best": self.best}
        path = save_checkpoint(self.folder / checkpoint_name(step), tensors, metadata)
        if better:
            save_checkpoint(self.folder / BEST_NAME, tensors, metadata)
        prune_checkpoints(self.folder, self.keep)
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state.get("best")
        self.best = best if isinstance(best, dict) and best.get("metric") == self.metric else None
