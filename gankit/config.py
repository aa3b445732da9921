"""RunConfig: the one resolved description of a run, from defaults, component recommendations, a TOML
file and command-line flags (in increasing priority)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gankit.builtins import DEFAULT_ARCH, DEFAULT_LOSS
from gankit.errors import GankitError, quoted, shortened

OPTIMIZERS = ("adam", "rmsprop", "sgd")
GENERATOR_NOISE = ("reuse", "fresh")
PRECISIONS = ("fp32", "bf16", "fp16")
DIVERGENCE_ACTIONS = ("stop", "rollback")
PATH_KEYS = ("out", "data_root")
# Seeds are 32-bit, as in NumPy: the batch order derives 64-bit torch seeds from the seed times a large
# prime, so a much larger seed would overflow them deep inside training.
MAX_SEED = 2**32 - 1


@dataclass
class RunConfig:
    """Every setting of a training run. Field names are the TOML keys; flags use ``-`` for ``_``."""

    # Defaults name their plugin, so that no installed plugin registering the same name can make a plain
    # `gankit run` ambiguous (docs/plugins.md, "Name collisions").
    arch: str = DEFAULT_ARCH
    loss: str = DEFAULT_LOSS
    reg: list[str] = field(default_factory=list)
    data: str = "digits:digits"
    data_root: str | None = None
    image_size: int | None = None  # None: the data source's own size
    data_cache: bool = True  # decoded-image cache of image-folder sources (--no-cache: decode in memory)
    batch_size: int = 64
    steps: int = 1000  # generator updates
    d_steps: int = 1  # discriminator updates per generator update
    # Overrides of the loss's or regularizers' discriminator-step schedule (docs/losses.md): boost steps train
    # the discriminator d_steps_boost times, the first d_steps_warmup generator updates and every
    # d_steps_boost_every-th one (0: never). None: the components' own value (100, 0 and 0 without one).
    d_steps_boost: int | None = None
    d_steps_warmup: int | None = None
    d_steps_boost_every: int | None = None
    # The generator update's noise: "reuse" the last discriminator step's batch (the article's DCGAN) or draw
    # a "fresh" one (the WGAN reference code).
    generator_noise: str = "reuse"
    optimizer: str = "adam"
    lr: float = 2e-4
    lr_d: float | None = None  # None: lr
    lr_g: float | None = None  # None: lr
    # Fraction of the run, at its end, over which both learning rates decay linearly towards zero (0: off).
    lr_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    z_dim: int = 100
    seed: int = 0
    device: str = "auto"
    sample_every: int = 100
    checkpoint_every: int = 500
    log_every: int = 10
    out: str | None = None
    # Evaluation and what a run leaves behind (docs/metrics.md).
    ema: float | None = None  # generator EMA decay, e.g. 0.999 (None: off); samples and metrics then use it
    eval_every: int = 0  # score the generator with `metric` every N steps (0: never); best.safetensors keeps the best
    metric: str | None = None  # e.g. "modes", "swd", "digits", "fid:weights=PATH"
    eval_count: int | None = None  # samples per evaluation (None: the metric's own default)
    logger: list[str] = field(default_factory=list)  # extra loggers, e.g. "csv", "tensorboard" (JSON lines always)
    # Speed settings (docs/performance.md): they change how the step runs, not what it computes.
    precision: str = "fp32"  # autocast dtype of forward passes: fp32, bf16, or fp16 (with a GradScaler; CUDA)
    compile: bool = False  # torch.compile the networks
    channels_last: bool = False  # NHWC memory layout for image networks and batches
    threads: int | None = None  # torch CPU threads (None: GANKIT_THREADS, else the default; 0: the default)
    # Reliability (docs/reliability.md): checkpoints kept, and the divergence guard.
    keep_checkpoints: int = 3  # newest step checkpoints kept (0: all); best.safetensors is kept apart
    best_metric: str | None = None  # a logged value, e.g. "fid": its best checkpoint is kept as best.safetensors
    best_mode: str = "min"  # "min" or "max": which best_metric values are better
    on_divergence: str = "stop"  # NaN/Inf: "stop", or "rollback" to the last good checkpoint with a lower lr
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5  # learning rates are multiplied by this at each rollback
    collapse_d_loss: float = 0.01  # |d_loss| below this counts as the discriminator winning outright...
    collapse_steps: int = 500  # ...for this many steps while g_loss climbs: a collapse (0: not checked)
    # Keys set explicitly by the user (file or flags); recommendations never override these.
    user_set: set[str] = field(default_factory=set, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "user_set"]

    @classmethod
    def from_sources(cls, file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
        """Defaults, then the TOML file, then ``overrides`` (flags; ``None`` values mean unset)."""
        config = cls()
        if file is not None:
            config.update(read_toml(file), source=str(file))
        if overrides:
            config.update({k: v for k, v in overrides.items() if v is not None and v != []}, source="flags")
        config.validate()
        return config

    def update(self, values: Mapping[str, Any], *, source: str, user: bool = True) -> None:
        """Set keys from a mapping, checking names and types; ``user`` marks them as set by the user."""
        fields = {f.name: f for f in dataclasses.fields(self) if f.name != "user_set"}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in fields:
                close = _close(key, fields)
                raise GankitError(f"unknown config key {quoted(raw_key)} in {shortened(source)}{close}")
            setattr(self, key, _coerce(key, fields[key].type, value, source))
            if user:
                self.user_set.add(key)

    def recommend(self, values: Mapping[str, Any], *, source: str) -> list[str]:
        """Apply recommended settings for keys the user did not set; returns the keys applied.

        A learning rate the user set with ``lr`` also outranks recommended per-network ``lr_d`` and ``lr_g``.
        """
        kept = set(self.user_set) | ({"lr_d", "lr_g"} if "lr" in self.user_set else set())
        applied = [k for k in values if k.replace("-", "_") not in kept]
        self.update({k: values[k] for k in applied}, source=source, user=False)
        return applied

    def validate(self) -> None:
        positive = ("batch_size", "steps", "d_steps", "d_steps_boost", "z_dim", "sample_every", "checkpoint_every", "log_every")
        for key in positive:
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise GankitError(f"{key.replace('_', '-')} must be positive, got {getattr(self, key)}")
        if not 0.0 <= self.lr_decay <= 1.0:
            raise GankitError(f"lr-decay must be a fraction of the run between 0 and 1, got {self.lr_decay}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise GankitError(f"ema must be a decay between 0 and 1 (e.g. 0.999), got {self.ema}")
        if self.eval_every < 0:
            raise GankitError(f"eval-every must be zero (off) or positive, got {self.eval_every}")
        if self.eval_count is not None and self.eval_count <= 0:
            raise GankitError(f"eval-count must be positive, got {self.eval_count}")
        for key in ("d_steps_warmup", "d_steps_boost_every"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise GankitError(f"{key.replace('_', '-')} must be zero (off) or positive, got {getattr(self, key)}")
        if self.generator_noise not in GENERATOR_NOISE:
            raise GankitError(
                f"generator-noise must be one of {', '.join(GENERATOR_NOISE)}, got {quoted(self.generator_noise)}"
            )
        if self.image_size is not None and self.image_size <= 0:
            raise GankitError(f"image-size must be positive, got {self.image_size}")
        for key in ("lr", "lr_d", "lr_g"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise GankitError(f"{key.replace('_', '-')} must be positive, got {value}")
        if self.optimizer not in OPTIMIZERS:
            raise GankitError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {quoted(self.optimizer)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise GankitError(f"betas must be two numbers in [0, 1), got {quoted(self.betas)}")
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise GankitError(f"precision must be one of {', '.join(PRECISIONS)}, got {quoted(self.precision)}")
        check_seed(self.seed)
        if self.threads is not None and self.threads < 0:
            raise GankitError(f"threads must be zero (the default) or positive, got {self.threads}")
        self._validate_reliability()
        self._validate_text()

    def _validate_text(self) -> None:
        """Every string must survive config.toml: UTF-8 text (a file name of other bytes reaches Python as lone
        surrogates, which TOML cannot hold), and paths without NUL, which no file name can contain."""
        for key, value in self.as_dict().items():
            for text in value if isinstance(value, list) else [value]:
                if not isinstance(text, str):
                    continue
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise GankitError(
                        f"{key.replace('_', '-')} {ascii(text)[:80]} is not UTF-8 text, which config.toml needs; "
                        "rename it"
                    ) from None
                if key in PATH_KEYS and "\x00" in text:
                    raise GankitError(f"{key.replace('_', '-')} {ascii(text)[:80]} contains a NUL character, which no path can hold")

    def _validate_reliability(self) -> None:
        if self.keep_checkpoints < 0:
            raise GankitError(f"keep-checkpoints must be zero (keep all) or positive, got {self.keep_checkpoints}")
        if self.best_mode not in ("min", "max"):
            raise GankitError(f"best-mode must be min or max, got {quoted(self.best_mode)}")
        if self.on_divergence not in DIVERGENCE_ACTIONS:
            raise GankitError(
                f"on-divergence must be one of {', '.join(DIVERGENCE_ACTIONS)}, got {quoted(self.on_divergence)}"
            )
        if self.max_rollbacks < 0:
            raise GankitError(f"max-rollbacks must be zero or positive, got {self.max_rollbacks}")
        if not 0 < self.rollback_lr_factor <= 1:
            raise GankitError(f"rollback-lr-factor must be in (0, 1], got {self.rollback_lr_factor}")
        if self.collapse_d_loss < 0:
            raise GankitError(f"collapse-d-loss must be zero or positive, got {self.collapse_d_loss}")
        if self.collapse_steps < 0:
            raise GankitError(f"collapse-steps must be zero (off) or positive, got {self.collapse_steps}")

    # -- output ----------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.keys()}

    def to_toml(self) -> str:
        lines = ["# gankit run configuration (resolved: flags, config file, recommendations, defaults)"]
        for key, value in self.as_dict().items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def check_seed(seed: int, label: str = "seed") -> int:
    """A seed every command accepts: an integer from 0 to MAX_SEED (flags and TOML alike)."""
    if not 0 <= seed <= MAX_SEED:
        raise GankitError(f"{label} must be between 0 and {MAX_SEED} (2^32 - 1), got {shortened(seed)}")
    return seed


def check_device(name: str) -> str:
    """A device name of the form every command accepts (whether that device exists is checked when used)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise GankitError(f"device must be auto, cpu, cuda or cuda:N, got {quoted(name)}")
    return name


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    shown = shortened(path)
    try:
        with _open_regular(path) as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise GankitError(f"config file not found: {shown}") from None
    except IsADirectoryError:
        raise GankitError(f"config file is a directory: {shown}") from None
    except PermissionError:
        raise GankitError(f"config file is not readable: {shown}") from None
    except UnicodeDecodeError:
        raise GankitError(f"config file is not UTF-8 text: {shown}") from None
    except tomllib.TOMLDecodeError as error:
        raise GankitError(f"config file {shown} is not valid TOML: {error}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise GankitError(f"config file {shown} nests arrays or tables too deeply to read") from None
    except OSError as error:
        raise GankitError(f"config file {shown} cannot be read: {error.strerror or error}") from None
    # A [run] table is accepted as well as top-level keys.
    if set(data) == {"run"} and isinstance(data["run"], dict):
        data = data["run"]
    return data


def _open_regular(path: Path):
    """Open a file for reading, refusing anything but a regular file: a FIFO would block forever."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise GankitError(f"config file {shortened(path)} is not a regular file (a FIFO, socket or device)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _close(key: str, fields: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(fields), n=1)
    return f"; did you mean {match[0].replace('_', '-')!r}?" if match else ""


def _coerce(key: str, annotation: str, value: Any, source: str) -> Any:
    """Check and convert a value against the field's annotation (a string, as annotations are postponed)."""
    optional = "None" in annotation
    base = annotation.replace("| None", "").strip()
    label = key.replace("_", "-")
    source = shortened(source)
    if value is None:
        if optional:
            return None
        raise GankitError(f"{label} cannot be empty (in {source})")
    if base == "list[str]":
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
    elif base == "list[float]":
        if isinstance(value, str):
            try:
                value = [float(v) for v in value.replace(",", " ").split()]
            except ValueError:
                raise GankitError(f"{label} must be numbers, got {quoted(value)} (in {source})") from None
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [_finite(label, float(v), source) for v in value]
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(label, _as_float(label, value, source), source)
        if isinstance(value, str):
            try:
                return _finite(label, float(value), source)
            except ValueError:
                pass
    elif base == "str":
        if isinstance(value, str) and "\0" in value:  # TOML can write one ("\u0000"); no path or name may hold it
            raise GankitError(f"{label} must not contain a NUL character, got {quoted(value)} (in {source})")
        if isinstance(value, str):
            return value
    elif base == "bool":
        if isinstance(value, bool):
            return value
    else:  # pragma: no cover - a field with a type this function does not know
        return value
    raise GankitError(f"{label} must be {base}, got {quoted(value)} (in {source})")


def _as_float(label: str, value: int | float, source: str) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float, e.g. lr = 1e400 written out in digits
        raise GankitError(f"{label} is too large, got {shortened(value)} (in {source})") from None


def _finite(label: str, value: float, source: str) -> float:
    # NaN slips through every range check (all comparisons are false), and no setting means anything at inf.
    if not math.isfinite(value):
        raise GankitError(f"{label} must be a finite number, got {value} (in {source})")
    return value


# A TOML basic string may hold neither a quote, a backslash nor any control character (U+0000-U+001F,
# U+007F) as itself: a newline or DEL in --out would otherwise write a config.toml no parser reads.
_TOML_ESCAPES = re.compile(r'["\\\x00-\x1f\x7f]')
_TOML_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_escape(match: re.Match) -> str:
    character = match.group()
    return _TOML_SHORT_ESCAPES.get(character) or f"\\u{ord(character):04X}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + _TOML_ESCAPES.sub(_toml_escape, value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
