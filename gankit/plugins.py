"""Plugin loading: builtin plugins, then entry points (group ``gankit``), each loaded on its own.

One broken plugin never breaks the CLI: its failure is recorded in :attr:`PluginSet.infos` and shown by
``gankit list-plugins``. ``GANKIT_STRICT_PLUGINS=1`` re-raises instead, for plugin authors.
``GANKIT_LOAD_PLUGINS=a,b`` loads only the named entry points; ``GANKIT_DISABLE_PLUGINS=a,b`` skips them.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from gankit import hookspecs
from gankit.errors import GankitError

ENTRY_POINT_GROUP = "gankit"

# Builtin plugins go through the same manager and hooks as third-party ones.
BUILTIN_PLUGINS = (
    "gankit.builtins.dcgan",
    "gankit.builtins.losses",
    "gankit.builtins.acgan",
    "gankit.builtins.regularizers",
    "gankit.builtins.augment",
    "gankit.builtins.wgan",
    "gankit.builtins.digits",
    "gankit.builtins.anime",
    "gankit.builtins.folder",
    "gankit.builtins.torchvision_data",
    "gankit.builtins.toy2d",
    "gankit.builtins.mlp",
    "gankit.builtins.metrics",
    "gankit.builtins.loggers",
)


@dataclass
class PluginInfo:
    """What ``gankit list-plugins`` shows about one plugin."""

    name: str
    version: str
    source: str  # "builtin", "entry point" or "local"
    module: str
    status: str = "ok"  # "ok", "failed" or "disabled"
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "provides": {kind: list(names) for kind, names in self.provides.items()},
        }


def strict() -> bool:
    return os.environ.get("GANKIT_STRICT_PLUGINS", "") not in ("", "0")


def blame(error: BaseException, plugin: str) -> None:
    """Name the plugin on an exception that strict mode re-raises; the original traceback is kept."""
    error.add_note(f"raised by gankit plugin {plugin!r} (GANKIT_STRICT_PLUGINS=1 re-raises plugin errors)")
    error.gankit_plugin = plugin  # the CLI lets such an error through with its traceback


def blamed_plugin(error: BaseException) -> str | None:
    """The plugin :func:`blame` named on this exception, if any."""
    return getattr(error, "gankit_plugin", None)


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def describe_exception(error: BaseException) -> str:
    """One line naming an exception: ``ValueError: bad thing``."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class PluginSet:
    """A pluggy manager holding every loaded plugin, with a :class:`PluginInfo` per plugin."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("gankit")
        self.manager.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    # -- loading ---------------------------------------------------------------------------------

    def load_builtins(self) -> None:
        from gankit import __version__

        for module_name in BUILTIN_PLUGINS:
            name = module_name.rsplit(".", 1)[-1]
            info = PluginInfo(name=name, version=__version__, source="builtin", module=module_name)
            self._load_module(info, lambda module_name=module_name: importlib.import_module(module_name))

    def load_entry_points(self) -> None:
        allowed = _env_names("GANKIT_LOAD_PLUGINS")
        disabled = _env_names("GANKIT_DISABLE_PLUGINS") or set()
        seen = set()
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            # One distribution can be found twice on sys.path (an editable install plus its egg-info): load it
            # once. Another module under the same name is not skipped: _load_module reports it as failed.
            if (entry_point.name, entry_point.value) in seen:
                continue
            seen.add((entry_point.name, entry_point.value))
            dist = getattr(entry_point, "dist", None)
            version = getattr(dist, "version", None) or "?"
            info = PluginInfo(
                name=entry_point.name, version=version, source="entry point", module=entry_point.value
            )
            if entry_point.name in disabled or (allowed is not None and entry_point.name not in allowed):
                info.status = "disabled"
                self.infos[info.name] = info
                continue
            self._load_module(info, entry_point.load)

    def add(self, plugin: Any, name: str, *, version: str = "?", source: str = "local") -> None:
        """Register an already-imported plugin object or module (used by tests and embedding code)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name=name, version=version, source=source, module=module)
        self._load_module(info, lambda: plugin)

    def _load_module(self, info: PluginInfo, load) -> None:
        if info.name in self.infos:
            info.status, info.error = "failed", f"another plugin is already named {info.name!r}"
            self.infos[f"{info.name} ({info.module})"] = info
            return
        self.infos[info.name] = info
        try:
            plugin = load()
            self.manager.register(plugin, name=info.name)
            self._check_hook_names(plugin, info)
        except Exception as error:  # a plugin's import or registration must never take the CLI down
            if strict():
                blame(error, info.name)
                raise
            if self.manager.has_plugin(info.name):
                self.manager.unregister(name=info.name)
            info.status, info.error = "failed", describe_exception(error)

    def _check_hook_names(self, plugin: Any, info: PluginInfo) -> None:
        # Like tox's check_pending(), but per plugin so that only the misspelling plugin is marked failed.
        for caller in self.manager.get_hookcallers(plugin) or []:
            if caller.spec is None:
                raise GankitError(f"unknown hook {caller.name!r} (misspelt hook name?)")

    # -- calling hooks ---------------------------------------------------------------------------

    def hook_implementations(self, hook_name: str) -> Iterable[tuple[str, Any]]:
        """``(plugin name, function)`` for each plugin implementing a hook, in registration order."""
        caller = getattr(self.manager.hook, hook_name)
        # get_hookimpls() lists registration order (pluggy *calls* them in reverse, which we never do).
        for implementation in caller.get_hookimpls():
            yield implementation.plugin_name, implementation.function

    def mark_failed(self, plugin_name: str, reason: str) -> None:
        info = self.infos.get(plugin_name)
        if info is not None:
            info.status, info.error = "failed", reason


def load_plugins(extra: Iterable[tuple[str, Any]] = (), *, entry_points: bool = True) -> PluginSet:
    """Load builtins, then entry-point plugins, then ``extra`` ``(name, plugin)`` pairs."""
    plugins = PluginSet()
    plugins.load_builtins()
    if entry_points:
        plugins.load_entry_points()
    for name, plugin in extra:
        plugins.add(plugin, name)
    return plugins


_default: PluginSet | None = None


def default_plugins() -> PluginSet:
    """The process-wide plugin set, loaded once (idempotent, as llm's ``load_plugins``)."""
    global _default
    if _default is None:
        _default = load_plugins()
    return _default


def reset_default_plugins() -> None:
    global _default
    _default = None
