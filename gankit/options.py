"""Component specs: ``name``, ``plugin:name``, ``name:key=value,key=value`` and their typed options."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from gankit.errors import GankitError, quoted

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Spec:
    """A parsed component spec: an optional plugin qualifier, the component name and raw option strings."""

    name: str
    plugin: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def normalize(name: str) -> str:
    """Names are case-insensitive and ``-`` equals ``_``."""
    return name.strip().lower().replace("_", "-")


def parse_spec(text: str) -> Spec:
    """Parse ``[plugin:]name[:key=value,...]``; the options part is the last ``:`` segment holding ``=``. A value
    may be a comma-separated list: the items after ``key=value`` without ``=`` of their own belong to it."""
    text = text.strip()
    if not text:
        raise GankitError("empty component name")
    parts = text.split(":")
    options: dict[str, str] = {}
    if len(parts) > 1 and "=" in parts[-1]:
        key = None
        for item in parts.pop().split(","):
            if not item.strip():
                continue
            if "=" not in item and key is not None:  # "policy=color,cutout": a list value goes on after its key
                options[key] += "," + item.strip()
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise GankitError(f"bad option {quoted(item)} in {quoted(text)}: expected key=value")
            key = key.strip().replace("-", "_")
            if key in options:  # "width=8,width=9": which one was meant is a guess, so it is not made
                raise GankitError(f"option {quoted(key)} is given twice in {quoted(text)}")
            options[key] = value.strip()
    if any("=" in part for part in parts):  # "dcgan:norm=layer:width=3": options split over two segments
        raise GankitError(
            f"bad component spec {quoted(text)}: options go in one last part, separated by commas "
            "(e.g. dcgan:norm=layer,width=32)"
        )
    if len(parts) == 1:
        return Spec(name=parts[0], options=options)
    if len(parts) == 2:
        return Spec(plugin=parts[0], name=parts[1], options=options)
    raise GankitError(f"bad component spec {quoted(text)}: expected [plugin:]name[:key=value,...]")


def format_spec(name: str, options: dict[str, Any]) -> str:
    """The canonical text of a resolved spec, as written into a run's config."""
    if not options:
        return name
    return name + ":" + ",".join(f"{key}={_format_value(value)}" for key, value in options.items())


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def signature_parameters(factory: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword parameters a factory accepts, and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}, True
    params = {}
    takes_kwargs = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_kwargs = True
        elif param.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            params[param.name] = param
    return params, takes_kwargs


def convert_options(
    label: str, factory: Callable, raw: dict[str, Any], reserved: set[str]
) -> dict[str, Any]:
    """Check option names against the factory's signature and convert string values to its types."""
    params, takes_kwargs = signature_parameters(factory)
    valid = {name: p for name, p in params.items() if name not in reserved}
    converted = {}
    for key, value in raw.items():
        if key not in valid:
            if takes_kwargs and key not in reserved:
                converted[key] = value
                continue
            listing = ", ".join(describe_option(p) for p in valid.values()) or "none"
            raise GankitError(f"{label} has no option {quoted(key)}; valid options: {listing}")
        converted[key] = _convert(label, valid[key], value)
    return converted


def describe_option(param: inspect.Parameter) -> str:
    kind = _option_type(param)
    text = param.name
    if kind is not None:
        text += f" ({kind.__name__})"
    if param.default is not inspect.Parameter.empty:
        text += f" = {param.default!r}"
    return text


def option_table(factory: Callable, reserved: set[str]) -> tuple[list[dict[str, Any]], bool]:
    """The user options a factory's signature declares (name, type, default, required), and whether it
    also accepts options it does not name (``**kwargs``). ``reserved``: what the engine passes itself."""
    params, takes_kwargs = signature_parameters(factory)
    rows = []
    for param in params.values():
        if param.name in reserved:
            continue
        required = param.default is inspect.Parameter.empty
        rows.append({
            "name": param.name,
            "type": _type_text(param),
            "default": None if required else param.default,
            "required": required,
        })
    return rows, takes_kwargs


def _type_text(param: inspect.Parameter) -> str | None:
    kind = _option_type(param)
    if kind is not None:
        return kind.__name__
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _option_type(param: inspect.Parameter):
    annotation = param.annotation
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.split("|")[0].strip())
    if annotation in (int, float, bool, str):
        return annotation
    default = param.default
    if default is not inspect.Parameter.empty and default is not None:
        if type(default) in (int, float, bool, str):
            return type(default)
    return None


def _convert(label: str, param: inspect.Parameter, value: Any) -> Any:
    kind = _option_type(param)
    if kind is None or not isinstance(value, str):
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is not None and value is not None and not isinstance(value, kind):
            raise GankitError(
                f"{label} option {param.name!r} must be {kind.__name__}, got {quoted(value)}"
            )
        return value
    try:
        if kind is bool:
            lowered = value.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)
        return kind(value)
    except ValueError:
        raise GankitError(
            f"{label} option {param.name!r} must be {kind.__name__}, got {quoted(value)}"
        ) from None
