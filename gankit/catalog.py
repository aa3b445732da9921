"""What users are shown about plugins and their components: ``gankit list-plugins``, ``gankit info`` and
``gankit.list_plugins()`` (descriptions, aliases, name collisions, a component's options)."""
from __future__ import annotations

import difflib
from typing import Any

from gankit.errors import GankitError
from gankit.options import normalize, option_table, parse_spec
from gankit.registry import KINDS, Component, Registry, default_registry

# Words accepted before a name to pick its kind in ``gankit info KIND:NAME``: kind names and flag names.
KIND_WORDS = {
    **{name: name for name in KINDS},
    **{kind.flag.lstrip("-"): name for name, kind in KINDS.items()},
}


def list_plugins(registry: Registry | None = None) -> list[dict[str, Any]]:
    """Every plugin with its status and version, and what it provides: names (``provides``) and, per
    component, its description, aliases and the other plugins registering the same name."""
    registry = registry or default_registry()
    listing = []
    for key, info in registry.plugins.infos.items():
        components = [c for kind in KINDS for c in registry.components[kind] if c.plugin == key]
        listing.append({**info.as_dict(), "components": [summary(registry, c) for c in components]})
    return listing


def summary(registry: Registry, component: Component) -> dict[str, Any]:
    """One component as listed: kind, name, plugin, description, aliases, and whom it collides with."""
    return {
        "kind": component.kind,
        "name": component.name,
        "plugin": component.plugin,
        "qualified_name": component.qualified_name,
        "description": component.description,
        "aliases": list(component.aliases),
        "collides_with": [c.qualified_name for c in same_name(registry, component)],
    }


def same_name(registry: Registry, component: Component) -> list[Component]:
    """The other components of its kind that answer to its name: a bare name then means several."""
    return [c for c in registry.collisions(component.kind).get(component.name, []) if c is not component]


def describe(registry: Registry, component: Component) -> dict[str, Any]:
    """A component in full: the summary plus its options from the factory's signature (``gankit info``)."""
    options, takes_more = option_table(component.factory, set(KINDS[component.kind].context))
    return {
        **summary(registry, component),
        "flag": KINDS[component.kind].flag,
        "options": options,
        "accepts_other_options": takes_more,
    }


def find(registry: Registry, text: str) -> Component:
    """The one component ``[kind:][plugin:]name`` means; an unknown or ambiguous name is a one-line error."""
    kinds, rest = _split_kind(text)
    spec = parse_spec(rest)
    if spec.options:
        raise GankitError(f"{text!r}: give a name without options (they are what gankit info lists)")
    found = [c for kind in kinds for c in registry.candidates(kind, spec)]
    if len(found) == 1:
        return found[0]
    if not found:
        if len(kinds) == 1:
            registry.get(kinds[0], rest)  # its own error: did you mean, the available names
        raise GankitError(f"no component is named {rest!r}{_close(registry, spec.name)}")
    raise GankitError(f"{text!r} names several components; choose one of: {', '.join(_choices(found))}")


def _split_kind(text: str) -> tuple[list[str], str]:
    head, sep, rest = text.strip().partition(":")
    if sep and normalize(head) in KIND_WORDS:
        return [KIND_WORDS[normalize(head)]], rest
    return list(KINDS), text


def _choices(found: list[Component]) -> list[str]:
    """The shortest unambiguous names for ``gankit info``: ``kind:name``, or ``kind:plugin:name``."""
    kinds = [c.kind for c in found]
    return [
        f"{c.kind}:{c.qualified_name if kinds.count(c.kind) > 1 else c.name}" for c in found
    ]


def _close(registry: Registry, name: str) -> str:
    known = sorted({n for kind in KINDS for c in registry.components[kind] for n in (c.name, *c.aliases)})
    match = difflib.get_close_matches(normalize(name), known, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""

