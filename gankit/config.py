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


@dataclass(frozen=True)
class Setting:
    """How a setting shows to users, carried in its RunConfig field's metadata: the ``gankit run`` flag,
    its ``--help`` text and its row in docs/cli.md are all derived from it (gankit/flags.py)."""

    help: str  #: one sentence for --help; docs/cli.md adds ``details``
    section: str  #: the docs/cli.md table the setting is listed in
    metavar: str | None = None  #: the value's name in help, e.g. N or SPEC (booleans: none)
    default_text: str | None = None  #: the default as users read it, when the field's own default does not say it
    details: str = ""  #: more for docs/cli.md
    flag: str | None = None  #: a flag other than --<name>: a boolean's one-sided negative flag, e.g. --no-cache
    choices: tuple[str, ...] = ()  #: the values allowed (validate() checks them)
    kind: str | None = None  #: the component kind a spec setting names (recommendations merge its options)
    bench: bool = False  #: `gankit bench` takes it too: it changes the step it times
    positive: bool = False  #: validate() refuses a value that is not above zero (None, where allowed, is unset)


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **shown: Any) -> Any:
    """A RunConfig field and how it shows to users (:class:`Setting`); this is the one place a setting is declared."""
    return field(default=default, default_factory=factory, metadata={"setting": Setting(**shown)})


@dataclass
class RunConfig:
    """Every setting of a training run. Field names are the TOML keys; flags use ``-`` for ``_``."""

    # Defaults name their plugin, so that no installed plugin registering the same name can make a plain
    # `gankit run` ambiguous (docs/plugins.md, "Name collisions").
    arch: str = setting(
        DEFAULT_ARCH, section="Components", metavar="SPEC", kind="architecture", bench=True,
        default_text="the data source's recommendation, else `dcgan:dcgan`",
        help="Architecture: the generator and discriminator, e.g. dcgan:width=32.",
        details="`resnet` comes from plugins/gankit-resnet. Options you give to the component the data recommends "
                "merge with the recommended ones (see below).",
    )
    loss: str = setting(
        DEFAULT_LOSS, section="Components", metavar="SPEC", kind="loss", bench=True,
        help="Adversarial loss over the discriminator's raw scores, e.g. bce.",
        details="It may recommend an optimizer, learning rate, betas and `d_steps`.",
    )
    reg: list[str] = setting(
        factory=list, section="Components", metavar="SPEC", kind="regularizer", bench=True, default_text="none",
        help="Regularizer of the discriminator; repeat to combine (--reg clip --reg gp); none: no regularizer.",
        details="In TOML a list, `reg = [\"gp\"]`. `--reg none` trains without one even where the data or loss "
                "recommends one.",
    )
    augment: list[str] = setting(
        factory=list, section="Components", metavar="SPEC", kind="augmentation", default_text="none",
        help="Differentiable augmentation of real and fake batches before the discriminator, e.g. diffaug or ada; "
             "repeat to compose.",
        details="E.g. `--augment diffaug:policy=color,translation,cutout`. In TOML a list, `augment = [\"ada\"]`; "
                "see [augmentation.md](augmentation.md).",
    )
    data: str = setting(
        "digits:digits", section="Components", metavar="SPEC", kind="data", bench=True,
        help="Data source, e.g. digits (embedded) or anime.",
        details="`digits` is embedded and generated, no download; `anime` is a folder of faces; other sources in "
                "[data.md](data.md).",
    )
    data_root: str | None = setting(
        None, section="Components", metavar="DIR", default_text="the source's", bench=True,
        help="Folder the data source reads from.",
        details="E.g. `--data anime --data-root path/to/faces`. A relative path is stored absolute in `config.toml` "
                "(one line says so), so `--resume` and `eval` work from any folder.",
    )
    image_size: int | None = setting(
        None, positive=True, section="Components", metavar="N", default_text="the data's", bench=True,
        help="Resize images to N x N pixels (the architecture must support the size).",
    )
    data_cache: bool = setting(
        True, section="Components", flag="--no-cache", default_text="cache on",
        help="Decode image folders in memory; neither read nor write the decoded-image cache.",
        details="TOML `data_cache = false`.",
    )
    conditional: bool = setting(
        False, section="Components",
        help="Train a class-conditional GAN: both networks get each example's class label (labelled data only).",
        details="The data must have classes and the architecture must condition on them; samples show one row per "
                "class. TOML `conditional = true`; see [conditional.md](conditional.md).",
    )
    batch_size: int = setting(
        64, positive=True, section="Training", metavar="N", bench=True, help="Real examples per discriminator step (and fakes per step).",
    )
    steps: int = setting(
        1000, positive=True, section="Training", metavar="N", help="Generator updates to train; with --resume, the new total.",
    )
    d_steps: int = setting(
        1, positive=True, section="Training", metavar="N", bench=True,
        help="Discriminator updates before each generator update (WGAN: 5).",
    )
    # Overrides of the loss's or regularizers' discriminator-step schedule (docs/losses.md): boost steps train
    # the discriminator d_steps_boost times, the first d_steps_warmup generator updates and every
    # d_steps_boost_every-th one (0: never). None: the components' own value (100, 0 and 0 without one).
    d_steps_boost: int | None = setting(
        None, positive=True, section="Training", metavar="N", default_text="unset",
        help="Discriminator updates in warm-up and boost steps (WGAN: 100).",
        details="Overrides that field of the loss's or regularizers' schedule "
                "([losses.md](losses.md#policy-in-the-loss); unset and no schedule: 100).",
    )
    d_steps_warmup: int | None = setting(
        None, section="Training", metavar="N", default_text="unset",
        help="The first N generator updates get --d-steps-boost discriminator updates (WGAN: 25; 0: off).",
        details="An override as above.",
    )
    d_steps_boost_every: int | None = setting(
        None, section="Training", metavar="N", default_text="unset",
        help="Every Nth generator update gets --d-steps-boost discriminator updates (WGAN: 500; 0: off).",
        details="An override as above.",
    )
    # The generator update's noise: "reuse" the last discriminator step's batch (the article's DCGAN) or draw
    # a "fresh" one (the WGAN reference code).
    generator_noise: str = setting(
        "reuse", section="Training", metavar="MODE", choices=GENERATOR_NOISE, bench=True,
        help="Noise of the generator update: reuse the last discriminator step's batch (DCGAN), or draw a fresh one "
             "(WGAN).",
    )
    optimizer: str = setting(
        "adam", section="Training", metavar="NAME", choices=OPTIMIZERS, bench=True,
        default_text="the loss's recommendation, else `adam`", help="Optimizer of both networks.",
    )
    lr: float = setting(
        2e-4, positive=True, section="Training", metavar="X", default_text="the data's or the loss's recommendation, else `0.0002`",
        help="Learning rate of both networks.",
    )
    lr_d: float | None = setting(None, positive=True, section="Training", metavar="X", default_text="--lr", help="Discriminator learning rate; overrides --lr.")
    lr_g: float | None = setting(None, positive=True, section="Training", metavar="X", default_text="--lr", help="Generator learning rate; overrides --lr.")
    lr_decay: float = setting(
        0.0, section="Training", metavar="F",
        help="Decay both learning rates linearly towards zero over the last fraction F of the run (0: constant).",
        details="E.g. `0.5`: the second half; the last update uses `1 / (F * steps)` of the rate.",
    )
    betas: list[float] = setting(
        factory=lambda: [0.5, 0.999], section="Training", metavar="B1,B2", help="Adam's betas, e.g. 0.5,0.999.",
        details="In TOML `betas = [0.5, 0.999]`.",
    )
    grad_clip_norm: float | None = setting(
        None, positive=True, section="Training", metavar="X", default_text="off", bench=True,
        help="Clip the gradient norm of each network to X before each of its optimizer steps.",
    )
    z_dim: int = setting(100, positive=True, section="Training", metavar="N", bench=True, help="Dimension of the generator's noise input.")
    seed: int = setting(
        0, section="Training", metavar="N",
        help="Seed of the initialisation, the batch order and the noise: same seed, same device, same run. From 0 to 2^32 - 1.",
    )
    device: str = setting(
        "auto", section="Training", metavar="NAME", bench=True,
        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
    )
    sample_every: int = setting(
        100, positive=True, section="Outputs", metavar="N",
        help="Write a grid of 64 samples from fixed noise every N steps (and at the end).",
        details="`samples/step-NNNNNNN.png`.",
    )
    checkpoint_every: int = setting(
        500, positive=True, section="Outputs", metavar="N", help="Write a checkpoint every N steps (and at the end).",
        details="`checkpoints/step-NNNNNNN.safetensors`.",
    )
    log_every: int = setting(
        10, positive=True, section="Outputs", metavar="N",
        help="Average the losses over N steps and append them to metrics.jsonl (and the progress bar).",
    )
    out: str | None = setting(
        None, section="Outputs", metavar="DIR", default_text="runs/<time>-<arch>-<loss>", help="Run directory to write.",
        details="gankit refuses a folder that already holds a run, a folder inside `--data-root` (the next run would "
                "train on its samples) or inside another run, and a folder another gankit process is writing (it is "
                "locked; the error names the PID).",
    )
    # Evaluation and what a run leaves behind (docs/metrics.md).
    ema: float | None = setting(
        None, section="Evaluation", metavar="DECAY", default_text="off",
        help="Keep an exponential moving average of the generator's weights, e.g. 0.999; samples and metrics then "
             "use it.",
    )
    eval_every: int = setting(
        0, section="Evaluation", metavar="N",
        help="Score the generator with --metric every N steps and keep the best checkpoint as best.safetensors "
             "(0: never).",
    )
    metric: str | None = setting(
        None, section="Evaluation", metavar="SPEC", kind="metric", default_text="none",
        help="Metric for --eval-every: modes, swd, digits, fid:weights=PATH or a plugin's.",
    )
    eval_count: int | None = setting(
        None, positive=True, section="Evaluation", metavar="N", default_text="the metric's", help="Samples drawn for each evaluation.",
    )
    logger: list[str] = setting(
        factory=list, section="Outputs", metavar="NAME", kind="logger", default_text="none",
        help="Extra logger, e.g. csv or tensorboard; repeat to combine. metrics.jsonl is always written.",
    )
    # Speed settings (docs/performance.md): they change how the step runs, not what it computes.
    precision: str = setting(
        "fp32", section="Speed", metavar="NAME", choices=PRECISIONS, bench=True,
        help="Forward passes in fp32, bf16 (autocast) or fp16 (autocast with a gradient scaler; CUDA only).",
    )
    compile: bool = setting(
        False, section="Speed", bench=True, help="torch.compile the networks (slow first steps, faster later ones).",
    )
    channels_last: bool = setting(
        False, section="Speed", bench=True,
        help="NHWC memory layout for image networks and batches (faster convolutions on recent GPUs).",
    )
    threads: int | None = setting(
        None, section="Speed", metavar="N", bench=True,
        default_text="GANKIT_THREADS, else 1 (torch's own when OMP_NUM_THREADS is set)",
        help="CPU threads torch computes with, set before anything is built (0: the default).",
        details="Changes speed, and on CPU the last bits of the weights (docs/performance.md). Negative: one-line error.",
    )
    # Reliability (docs/reliability.md): checkpoints kept, and the divergence guard.
    keep_checkpoints: int = setting(
        3, section="Outputs", metavar="N",
        help="Keep only the newest N step checkpoints (0: keep all); best.safetensors is kept apart.",
    )
    best_metric: str | None = setting(
        None, section="Reliability", metavar="KEY", default_text="the metric's headline",
        help="A logged value, e.g. fid: the checkpoint where it is best is kept as best.safetensors.",
    )
    best_mode: str = setting(
        "min", section="Reliability", metavar="MODE", choices=("min", "max"),
        help="Which --best-metric values are better: min or max.",
    )
    on_divergence: str = setting(
        "stop", section="Reliability", metavar="ACTION", choices=DIVERGENCE_ACTIONS,
        help="On NaN/Inf (or a long collapse): stop with an error, or rollback to the last good checkpoint with "
             "lower learning rates.",
    )
    max_rollbacks: int = setting(3, section="Reliability", metavar="N", help="Rollbacks allowed before the run stops.")
    rollback_lr_factor: float = setting(
        0.5, section="Reliability", metavar="X", help="Learning rates are multiplied by this at each rollback.",
    )
    collapse_d_loss: float = setting(
        0.01, section="Reliability", metavar="X",
        help="A |D loss| below this counts as the discriminator winning outright...",
    )
    collapse_steps: int = setting(
        500, section="Reliability", metavar="N",
        help="...for this many steps while the G loss climbs: a collapse (0: not checked).",
    )
    # Keys set explicitly by the user (file or flags); recommendations never override these.
    user_set: set[str] = field(default_factory=set, repr=False, compare=False)
    # A config read back from a run (resume): recommendations change nothing in it, not even merged options.
    resolved: bool = field(default=False, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in settings(cls)]

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
        fields = {f.name: f for f in settings(self)}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in fields:
                close = _close(key, fields)
                raise GankitError(f"unknown config key {quoted(raw_key)} in {shortened(source)}{close}")
            setattr(self, key, _coerce(key, fields[key].type, value, source))
            if user:
                self.user_set.add(key)

    def recommend(self, values: Mapping[str, Any], *, source: str, components: Any = None) -> list[str]:
        """Apply recommended settings for keys the user did not set; returns the keys applied.

        A learning rate the user set with ``lr`` also outranks recommended per-network ``lr_d`` and ``lr_g``.
        A component the user named (``arch``, ``loss``, ...) takes the options of a recommendation of the same
        component, the user's options winning key by key; a recommendation of another component is dropped.
        ``components`` (a Registry) tells whether two specs name the same component; without it nothing merges.
        """
        kept = set(self.user_set) | ({"lr_d", "lr_g"} if "lr" in self.user_set else set())
        applied = [k for k in values if k.replace("-", "_") not in kept]
        self.update({k: values[k] for k in applied}, source=source, user=False)
        if components is not None and not self.resolved:
            applied += self._merge_recommended_options({k: v for k, v in values.items() if k not in applied}, components)
        return applied

    def _merge_recommended_options(self, values: Mapping[str, Any], components: Any) -> list[str]:
        merged = []
        for key, recommended in values.items():
            key = key.replace("-", "_")
            kind = SETTINGS_BY_NAME[key].kind if key in SETTINGS_BY_NAME else None
            chosen = getattr(self, key, None)
            if kind is None or not isinstance(recommended, str) or not isinstance(chosen, str):
                continue
            spec = components.merge_options(kind, recommended=recommended, chosen=chosen)
            if spec != chosen:
                setattr(self, key, spec)
                merged.append(key)
        return merged

    def validate(self) -> None:
        for key, shown in SETTINGS_BY_NAME.items():
            value = getattr(self, key)
            if shown.positive and value is not None and not value > 0:  # "not > 0" refuses NaN too
                raise GankitError(f"{key.replace('_', '-')} must be positive, got {value}")
        if not 0.0 <= self.lr_decay <= 1.0:
            raise GankitError(f"lr-decay must be a fraction of the run between 0 and 1, got {self.lr_decay}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise GankitError(f"ema must be a decay between 0 and 1 (e.g. 0.999), got {self.ema}")
        if self.eval_every < 0:
            raise GankitError(f"eval-every must be zero (off) or positive, got {self.eval_every}")
        for key in ("d_steps_warmup", "d_steps_boost_every"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise GankitError(f"{key.replace('_', '-')} must be zero (off) or positive, got {getattr(self, key)}")
        for name, shown in SETTINGS_BY_NAME.items():
            if shown.choices and getattr(self, name) not in shown.choices:
                raise GankitError(
                    f"{name.replace('_', '-')} must be one of {', '.join(shown.choices)}, got {quoted(getattr(self, name))}"
                )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise GankitError(f"betas must be two numbers in [0, 1), got {quoted(self.betas)}")
        check_device(self.device)
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


def settings(config: Any = None) -> list[dataclasses.Field]:
    """RunConfig's fields that are settings (TOML keys and flags), in declaration order."""
    return [f for f in dataclasses.fields(config or RunConfig) if "setting" in f.metadata]


SETTINGS_BY_NAME: dict[str, Setting] = {f.name: f.metadata["setting"] for f in settings()}


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
        if _says_none(value):
            return []
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


def _says_none(value: Any) -> bool:
    """A list setting given as "none": empty, where a default or a recommendation would otherwise fill it (ring
    data recommends r1; `--reg none` trains without it)."""
    return value == "none" or value == ["none"]


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
