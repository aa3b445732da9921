"""Checkpoints: safetensors files with JSON metadata, written atomically; never a pickle.

A checkpoint holds tensors under dotted prefixes (``generator.``, ``discriminator.``, ``optimizer_g.``...)
and one JSON document in the safetensors header under the key ``gankit``.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

import torch

from gankit.errors import ECHO_LIMIT, GankitError, shortened
from gankit.events import EvaluationDone, Event, StepLogged

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
    from gankit.cache import cache_temporary

    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    # Named with the writer's PID and locked while written, so that a temporary a SIGKILL left behind can be
    # told from a live writer's and removed (remove_stale_writes).
    with cache_temporary(path, hidden=True) as (descriptor, temporary):
        os.fchmod(descriptor, new_file_mode())  # the mode any new file gets under the user's umask
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fsync(descriptor)
        os.replace(temporary, path)
    _fsync_folder(path.parent)
    return path


def remove_stale_writes(path: str | Path) -> list[Path]:
    """Remove the temporaries of :func:`write_atomic` for ``path`` whose writer died mid-write (SIGKILL)."""
    from gankit.cache import remove_stale_temporaries

    path = Path(path)
    return remove_stale_temporaries(path.parent, prefix=f".{path.name}.")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (0644 under the usual 022)."""
    return 0o666 & ~_current_umask()


def _current_umask() -> int:
    # Linux reports the umask without changing it; os.umask can only read it by setting it, which would
    # briefly affect files other threads create.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


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
    """A checkpoint that cannot be used: truncated, corrupted, not a regular file, unreadable, holding a
    dtype gankit does not load, or metadata of the wrong shape. ``--resume`` skips such a file."""


# Suffixes of files that are pickles in the PyTorch world; named in messages when a folder holds only these.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")

# safetensors' own reader refuses headers above 100 MB; a larger length is damage, not a header.
MAX_HEADER_BYTES = 100_000_000

# safetensors dtypes gankit loads, with their sizes in bytes. Complex tensors would lose their imaginary
# part when loaded into real weights, and the others have no torch equivalent: such files are refused.
SUPPORTED_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}

_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _file_kind(mode: int) -> str:
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")


def _open_regular(path: Path):
    """Open ``path`` for reading only if it is a regular file: a FIFO would block forever and a device
    would never end. Opened without blocking, then checked on the descriptor, so a swap cannot slip past."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if path.is_symlink():
            raise DamagedCheckpoint(f"cannot read checkpoint {path}: it is a link to a missing file") from None
        raise GankitError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise DamagedCheckpoint(f"{path} is a folder, not a checkpoint file") from None
    except OSError as error:
        raise DamagedCheckpoint(f"cannot read checkpoint {path}: {error.strerror}") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise DamagedCheckpoint(f"{path} is {_file_kind(mode)}, not a checkpoint file")
    return os.fdopen(descriptor, "rb")


def _is_pickle(head: bytes) -> bool:
    # torch.save writes a zip archive ("PK\x03\x04") holding a pickle, or (legacy format) a bare pickle
    # (protocol 2 to 5 starts with 0x80 and the protocol number). Recognised by bytes, never by unpickling.
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def _read_header(path: Path, handle, size: int) -> dict[str, Any]:
    """The safetensors header of an open checkpoint, checked entry by entry.

    The file's own structure is recognised first: an 8-byte little-endian header length, then ``{``. Its
    first byte is the length's low byte, which may well be 0x80 or "P": only a file without that structure
    is examined as a pickle.
    """
    head = handle.read(9)
    if len(head) < 9:
        raise DamagedCheckpoint(f"checkpoint {path} is truncated ({size} bytes)")
    header_length = int.from_bytes(head[:8], "little")
    if head[8:9] != b"{":
        if _is_pickle(head):
            raise PickleRefused(
                f"{path} is a pickle (torch.save) file; gankit reads only its own safetensors checkpoints "
                "and never unpickles a file"
            )
        raise DamagedCheckpoint(f"{path} is not a safetensors checkpoint (unrecognised content)")
    if header_length > MAX_HEADER_BYTES:
        raise DamagedCheckpoint(f"checkpoint {path} is corrupted (its header length {header_length} is not plausible)")
    if 8 + header_length > size:
        raise DamagedCheckpoint(f"checkpoint {path} is truncated ({size} bytes, header alone needs {8 + header_length})")
    text = head[8:] + handle.read(header_length - 1)
    try:
        # Valid JSON that starts with "{" is an object.
        header = json.loads(text.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
        raise DamagedCheckpoint(f"checkpoint {path} has a damaged header ({_short(str(error))})") from None
    _check_tensor_entries(path, header, size, 8 + header_length)
    return header


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; in a checkpoint that would silently drop a tensor or a value.
    document = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(f"the key {_short(key)!r} appears twice")
        document[key] = value
    return document


def _check_tensor_entries(path: Path, header: dict[str, Any], file_size: int, data_start: int) -> None:
    needed = data_start
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(value, str) for value in entry.values()):
                raise DamagedCheckpoint(f"checkpoint {path} has a damaged header (__metadata__ is not a table of strings)")
            continue
        where = f"checkpoint {path}: tensor {_short(name)!r}"
        if not isinstance(entry, dict):
            raise DamagedCheckpoint(f"{where} has a damaged header entry")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SUPPORTED_DTYPES:
            kind = " (complex numbers)" if isinstance(dtype, str) and dtype.startswith("C") else ""
            raise DamagedCheckpoint(
                f"{where} has dtype {_short(str(dtype))}{kind}, which gankit does not load "
                f"(supported: {', '.join(SUPPORTED_DTYPES)})"
            )
        if not (isinstance(shape, list) and all(_is_int(n) and n >= 0 for n in shape)):
            raise DamagedCheckpoint(f"{where} has a damaged shape ({_short(repr(shape))})")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) for n in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise DamagedCheckpoint(f"{where} has damaged offsets ({_short(repr(offsets))})")
        if offsets[1] - offsets[0] != math.prod(shape) * SUPPORTED_DTYPES[dtype]:
            raise DamagedCheckpoint(f"{where} does not fit its shape {tuple(shape)} and dtype {dtype}")
        needed = max(needed, data_start + offsets[1])
    if needed > file_size:
        raise DamagedCheckpoint(f"checkpoint {path} is truncated ({file_size} bytes, its tensors need {needed})")
    if needed < file_size:
        raise DamagedCheckpoint(f"checkpoint {path} is corrupted ({file_size - needed} bytes after its last tensor)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` on one line and cut like every echoed value: a damaged file must not produce a megabyte error line."""
    return shortened(" ".join(text.split()), limit)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint's tensors and metadata; any problem is a one-line GankitError (a DamagedCheckpoint
    for a file that exists but cannot be used, a PickleRefused for a pickle)."""
    from safetensors import safe_open

    path = Path(path)
    with _open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        header = _read_header(path, handle, size)
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as reader:
            for name in reader.keys():
                tensors[name] = reader.get_tensor(name)
    except Exception as error:  # safetensors raises several types for damaged files
        raise DamagedCheckpoint(f"checkpoint {path} is truncated or corrupted ({type(error).__name__})") from None
    if set(tensors) != set(header) - {"__metadata__"}:  # the file changed while it was read
        raise DamagedCheckpoint(f"checkpoint {path} changed while it was read")
    stored = header.get("__metadata__", {})
    if stored.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{path} is a safetensors file but not a gankit checkpoint")
    try:
        metadata = json.loads(stored["gankit"], object_pairs_hook=_refuse_duplicate_keys)
    except (KeyError, ValueError, RecursionError):  # RecursionError: JSON nested too deep to parse
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata") from None
    check_metadata(path, metadata)
    return tensors, metadata


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _python_rng_state(value: Any) -> bool:
    import random

    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[1], list)):
        return False
    try:  # a scratch generator: Python itself knows which states are valid
        random.Random().setstate((value[0], tuple(value[1]), value[2]))
    except (TypeError, ValueError, OverflowError):
        return False
    return True


# What each metadata entry that sample, eval and resume read must look like (when present; the reader
# says when one it needs is missing): (check, what the entry must be).
METADATA_SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "step": (_non_negative_int, "a non-negative integer"),
    "shape": (lambda v: isinstance(v, list) and len(v) > 0 and all(_positive_int(n) for n in v), "a list of positive integers"),
    "z_dim": (_positive_int, "a positive integer"),
    # A conditional run's classes (docs/conditional.md); absent otherwise.
    "num_classes": (lambda v: _positive_int(v) and v >= 2, "an integer of at least 2"),
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of strings"),
    "config": (lambda v: isinstance(v, dict), "a table"),
    "states": (lambda v: isinstance(v, dict), "a table"),
    "batches": (
        lambda v: isinstance(v, dict) and _non_negative_int(v.get("epoch")) and _non_negative_int(v.get("position")),
        '{"epoch": N, "position": N}',
    ),
    "rng_python": (_python_rng_state, "a Python random state [version, [integers], gauss]"),
    "interval": (lambda v: v is None or (isinstance(v, dict) and _non_negative_int(v.get("count", 0))), '{"count": N}'),
    "guard": (
        lambda v: v is None or (
            isinstance(v, dict) and _non_negative_int(v.get("rollbacks", 0))
            and (v.get("streak") is None or (isinstance(v["streak"], list) and len(v["streak"]) == 2
                                             and _is_int(v["streak"][0]) and _number(v["streak"][1])))
        ),
        '{"rollbacks": N, "streak": null or [step, loss]}',
    ),
    "best": (
        lambda v: v is None or (isinstance(v, dict) and isinstance(v.get("metric"), str) and _number(v.get("value"))
                                and _non_negative_int(v.get("step"))),
        'null or {"metric": name, "value": number, "step": N}',
    ),
}


def check_metadata(path: Path, metadata: Any) -> None:
    """Refuse metadata of the wrong shape in one line, before anything reads it."""
    if not isinstance(metadata, dict):
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata (not a JSON object)")
    if "step" not in metadata:
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata (no step)")
    for key, (fits, expected) in METADATA_SHAPES.items():
        if key in metadata and not fits(metadata[key]):
            raise DamagedCheckpoint(
                f"checkpoint {path} has damaged metadata: {key} must be {expected}, got {_short(json.dumps(metadata[key]))}"
            )
    names, count = metadata.get("class_names"), metadata.get("num_classes")
    if names is not None and (len(names) != count or len(set(names)) != len(names)):
        raise DamagedCheckpoint(
            f"checkpoint {path} has damaged metadata: class_names must be num_classes distinct names, "
            f"got {len(names)} for num_classes {_short(json.dumps(count))}"
        )
    _check_recorded_config(path, metadata.get("config", {}))


def _check_recorded_config(path: Path, config: dict[str, Any]) -> None:
    # The run's settings, checked as a config file's would be; keys this version does not know are left
    # alone (a newer gankit may have written them).
    from gankit.config import RunConfig

    known = set(RunConfig.keys())
    try:
        RunConfig().update({key: value for key, value in config.items() if key in known}, source="config")
    except GankitError as error:
        raise DamagedCheckpoint(f"checkpoint {path} has damaged metadata: {_short(str(error), 200)}") from None


def require_finite(path: Path, tensors: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    """Refuse a checkpoint whose weights under ``prefixes`` hold NaN or Inf, naming the first such tensor."""
    from gankit.divergence import nonfinite_tensors

    named = [(name, tensor) for name, tensor in tensors.items() if name.split(".", 1)[0] in prefixes]
    bad = nonfinite_tensors(named)
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DamagedCheckpoint(f"checkpoint {path} holds NaN or Inf in {bad[0]}{more}; its weights are unusable")


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


def _named_checkpoints(folder: Path) -> list[Path]:
    """Every entry named like a step checkpoint, oldest first, whatever kind of file it is."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step-*.safetensors") if p.name[len("step-") :].split(".", 1)[0].isdigit()]
    return sorted(found, key=checkpoint_step)


def list_checkpoints(folder: str | Path) -> list[Path]:
    """A run's checkpoints, oldest first: regular files only (temporary files from an interrupted write, and
    folders, FIFOs or broken links that merely carry the name, are left out and never touched)."""
    return [path for path in _named_checkpoints(Path(folder)) if path.is_file()]


def _pickles_note(folder: Path) -> str:
    pickles = sorted(
        p.name for where in (folder, folder / "checkpoints") if where.is_dir()
        for p in where.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES
    )
    if not pickles:
        return ""
    return f" (only {', '.join(pickles[:3])}: pickle files, which gankit never loads)"


def newest_loadable_checkpoint(
    run_dir: str | Path,
    warn: Callable[[str], None],
    *,
    usable: Callable[[Path, dict, dict], None] | None = None,
) -> tuple[Path, dict, dict]:
    """The newest checkpoint of a run that loads: ``(path, tensors, metadata)``.

    Checkpoints are looked for in ``run_dir/checkpoints`` (``run_dir`` itself when it has no such folder). A newest file that
    cannot be used (cut short, damaged metadata, a folder, a FIFO or a link loop under its name, or refused
    by ``usable``, which raises DamagedCheckpoint) is skipped with a one-line warning and the previous one
    used. A pickle is never skipped quietly: it is refused, as everywhere.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    found = _named_checkpoints(folder)
    if not found:
        raise GankitError(f"no checkpoint in {run_dir}{_pickles_note(run_dir)}")
    for path in reversed(found):
        try:
            tensors, metadata = load_checkpoint(path)
            if usable is not None:
                usable(path, tensors, metadata)
        except DamagedCheckpoint as error:
            last_problem = str(error)
            warn(f"skipping {path.name}: {error}")
            continue
        return path, tensors, metadata
    raise GankitError(f"no usable checkpoint in {folder} (the oldest: {last_problem})")


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

    def __call__(self, event: Event) -> None:
        if self.metric is None:
            return
        # Logged intervals and evaluations carry values; best_metric names one of either (e.g. "fid", "d_loss").
        values = event.values if isinstance(event, (StepLogged, EvaluationDone)) else {}
        value = values.get(self.metric)
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
