"""Name -> component lookup, built by calling every plugin's registration hooks.

Each hook implementation is called on its own, so a plugin whose hook raises is marked failed and the
others still register. Names are case-insensitive with ``-`` equal to ``_``; a name two plugins register
stays reachable as ``plugin:name``, and the bare name is an error listing both.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from gankit.errors import GankitError, quoted
from gankit.hookspecs import component_hooks
from gankit.options import Spec, convert_options, format_spec, normalize, parse_spec, signature_parameters
from gankit.plugins import PluginSet, blame, default_plugins, describe_exception, strict


@dataclass(frozen=True)
class Kind:
    """A kind of component: its name in messages, the hook that registers it, and its CLI flag."""

    name: str
    hook: str
    flag: str
    # Keyword arguments the engine passes itself; they are not user options.
    context: tuple[str, ...] = ()


# Derived from the hookspecs' declarations, so that the context a factory receives is written down once.
KINDS: dict[str, Kind] = {
    spec.factories.kind: Kind(spec.factories.kind, hook, spec.factories.flag, spec.factories.engine_context)
    for hook, spec in component_hooks().items()
}


@dataclass
class Component:
    """One registered component: which plugin registered it, under which name, with which factory."""

    kind: str
    name: str
    factory: Callable
    plugin: str
    description: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"


@dataclass
class Built:
    """A component built from a spec, with the canonical spec text to record in the run's config."""

    component: Component
    value: Any
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        # Always ``plugin:name``: a plugin installed later that registers the same name must not make the
        # recorded run ambiguous (sample, eval and --resume rebuild from this text).
        return format_spec(self.component.qualified_name, self.options)


class Registry:
    def __init__(self, plugins: PluginSet) -> None:
        self.plugins = plugins
        self.components: dict[str, list[Component]] = {kind: [] for kind in KINDS}
        for info in plugins.infos.values():  # a second Registry over the same plugins must not list twice
            info.provides.clear()
        for kind in KINDS.values():
            self._collect(kind)

    def _collect(self, kind: Kind) -> None:
        for plugin_name, function in self.plugins.hook_implementations(kind.hook):
            collected: list[Component] = []

            def register(name, factory, *, description="", aliases=(), _into=collected, _plugin=plugin_name):
                if not isinstance(name, str) or not name.strip():
                    raise GankitError(f"register() needs a non-empty name, got {name!r}")
                if any(mark in name for mark in ":=,"):  # they separate plugin, name and options in a spec
                    raise GankitError(f"register() name {name!r} may not contain ':', '=' or ','")
                if not callable(factory):
                    raise GankitError(f"{kind.name} {name!r}: factory must be a class or callable, got {factory!r}")
                if isinstance(aliases, str):
                    aliases = (aliases,)
                if normalize(name) in {c.name for c in _into}:
                    raise GankitError(f"{kind.name} {normalize(name)!r} is registered twice by this plugin")
                _into.append(
                    Component(kind.name, normalize(name), factory, _plugin, description, tuple(map(normalize, aliases)))
                )

            try:
                function(register=register)
            except Exception as error:
                if strict():
                    blame(error, plugin_name)
                    raise
                self.plugins.mark_failed(plugin_name, f"{kind.hook} raised {describe_exception(error)}")
                self._forget(plugin_name)
                continue
            info = self.plugins.infos.get(plugin_name)
            if info is not None and info.status != "ok":
                continue
            self.components[kind.name].extend(collected)
            if info is not None:
                info.provides.setdefault(kind.name, []).extend(c.name for c in collected)

    def _forget(self, plugin_name: str) -> None:
        # A failed plugin provides nothing, not even what its earlier hooks registered before one raised.
        for components in self.components.values():
            components[:] = [c for c in components if c.plugin != plugin_name]
        info = self.plugins.infos.get(plugin_name)
        if info is not None:
            info.provides.clear()

    # -- lookup ----------------------------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        return sorted({c.name for c in self.components[kind]})

    def get(self, kind: str, name: str) -> Component:
        spec = parse_spec(name)
        if spec.options:
            raise GankitError(f"{quoted(name)}: options are not allowed here")
        return self._find(kind, spec)

    def candidates(self, kind: str, spec: Spec) -> list[Component]:
        """The components a spec may mean: by name, else by alias; only its plugin's when it names one."""
        wanted = normalize(spec.name)
        found = [c for c in self.components[kind] if c.name == wanted]
        if not found:
            found = [c for c in self.components[kind] if wanted in c.aliases]
        if spec.plugin is not None:
            found = [c for c in found if normalize(c.plugin) == normalize(spec.plugin)]
        return found

    def collisions(self, kind: str) -> dict[str, list[Component]]:
        """Names of this kind that several plugins register; each is reachable only as ``plugin:name``."""
        by_name: dict[str, list[Component]] = {}
        for component in self.components[kind]:
            by_name.setdefault(component.name, []).append(component)
        return {name: found for name, found in by_name.items() if len(found) > 1}

    def recorded_spec(self, kind: str, text: str, metadata: dict[str, Any], key: str | None = None) -> str:
        """A spec read back from a run, with the plugin that built it named when its bare name is now ambiguous.

        Runs of gankit 0.1 recorded bare names; their checkpoints also record which plugin built each
        component (``metadata["components"][key]["plugin"]``), and that settles a name another plugin took
        since. Without that record the bare name stays, and an ambiguity is the usual error listing both.
        """
        spec = parse_spec(text)
        records = metadata.get("components")
        record = records.get(key or kind) if isinstance(records, dict) else None
        plugin = record.get("plugin") if isinstance(record, dict) else None
        if spec.plugin is not None or not isinstance(plugin, str) or len(self.candidates(kind, spec)) < 2:
            return text
        return f"{plugin}:{text.strip()}"

    def _find(self, kind: str, spec: Spec) -> Component:
        wanted = normalize(spec.name)
        candidates = self.candidates(kind, spec)
        if len(candidates) == 1:
            return candidates[0]
        flag = KINDS[kind].flag
        if not candidates:
            known = self.names(kind) + sorted({a for c in self.components[kind] for a in c.aliases})
            where = f" from plugin {quoted(spec.plugin)}" if spec.plugin is not None else ""
            message = f"unknown {kind} {quoted(spec.name)}{where} for {flag}"
            elsewhere = self.candidates(kind, Spec(spec.name)) if spec.plugin is not None else []
            close = difflib.get_close_matches(wanted, known, n=1)
            if elsewhere:  # the name exists, the plugin is wrong (or gone): say which plugins have it
                message += f"; did you mean {' or '.join(repr(c.qualified_name) for c in elsewhere)}?"
            elif close:
                message += f"; did you mean {close[0]!r}?"
            message += f" (available: {', '.join(self.names(kind)) or 'none'})"
            # The name may belong to a plugin that failed: say so, or the user hunts for a typo that is not there.
            failed = [f"{i.name!r} ({i.error})" for i in self.plugins.infos.values() if i.status == "failed"]
            if failed:
                message += f"; plugins that failed to load: {', '.join(failed)}"
            raise GankitError(message)
        choices = ", ".join(c.qualified_name for c in candidates)
        raise GankitError(f"{kind} {quoted(spec.name)} is provided by several plugins; choose one of: {choices}")

    def merge_options(self, kind: str, *, recommended: str, chosen: str) -> str:
        """``chosen`` with the options of ``recommended`` it does not set, when both name the same component
        (``dcgan:norm=layer`` and a recommended ``dcgan:width=32`` give ``dcgan:width=32,norm=layer``);
        ``chosen`` unchanged when they name different components (or a name is unknown: its build says so)."""
        try:
            wanted, offered = parse_spec(chosen), parse_spec(recommended)
            if self._find(kind, wanted) is not self._find(kind, offered):
                return chosen
        except GankitError:
            return chosen
        prefix = f"{wanted.plugin}:{wanted.name}" if wanted.plugin is not None else wanted.name
        return format_spec(prefix, {**offered.options, **wanted.options})

    def resolve(self, kind: str, text: str) -> tuple[Component, dict[str, Any]]:
        """Find the component a spec names and convert its options to the factory's types."""
        spec = parse_spec(text)
        component = self._find(kind, spec)
        options = convert_options(
            f"{kind} {component.name!r}", component.factory, spec.options, set(KINDS[kind].context)
        )
        return component, options

    def build(self, kind: str, text: str, **context: Any) -> Built:
        """Build a component from a spec; context (e.g. ``shape``) goes to factories that accept it."""
        component, options = self.resolve(kind, text)
        params, takes_kwargs = signature_parameters(component.factory)
        passed = {k: v for k, v in context.items() if takes_kwargs or k in params}
        try:
            value = component.factory(**passed, **options)
        except GankitError:
            raise
        except Exception as error:
            if strict():
                blame(error, component.plugin)
                raise
            raise GankitError(
                f"{kind} {component.qualified_name!r} failed to build: {describe_exception(error)}"
            ) from error
        return Built(component, value, options)


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry over the process-wide plugin set, built once."""
    global _default
    if _default is None or _default.plugins is not default_plugins():
        _default = Registry(default_plugins())
    return _default
