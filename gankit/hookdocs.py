"""The hook reference of docs/hooks.md, generated from gankit/hookspecs.py so that the two cannot drift.

docs/hooks.md holds one block per hook (and one for ``register``) between marker comments; everything outside
them (the introduction, the examples, the events) is written by hand. ``python -m gankit.hookdocs`` rewrites
the blocks in place; ``--check`` only says whether the file is up to date (tests/test_docs.py runs it).
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from gankit import hookspecs

BEGIN = "<!-- generated from gankit/hookspecs.py by `python -m gankit.hookdocs`: {name} -->"
END = "<!-- end of generated {name} -->"
_BLOCK = re.compile(r"<!-- generated from gankit/hookspecs\.py by `python -m gankit\.hookdocs`: (\S+) -->\n.*?"
                    r"<!-- end of generated \1 -->", flags=re.DOTALL)


def signature_text(function, *, skip_first: bool = False) -> str:
    """``(name: type = default, *, ...) -> type`` with the annotations as written (they are strings here)."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1 if skip_first else 0:]
    parts, starred = [], False
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not starred:
            parts.append("*")
            starred = True
        text = f"{parameter.name}: {parameter.annotation}"
        if parameter.default is not inspect.Parameter.empty:
            default = parameter.default
            text += f' = "{default}"' if isinstance(default, str) else f" = {default!r}"
        parts.append(text)
    return f"({', '.join(parts)}) -> {signature.return_annotation}"


def render_register() -> str:
    signature = signature_text(hookspecs.Register.__call__, skip_first=True)
    return f"```python\nregister{signature}\n```\n\n{inspect.getdoc(hookspecs.Register)}\n"


def render_hook(name: str) -> str:
    function = hookspecs.component_hooks()[name]
    return (
        f"## {name}\n\n```python\n@gankit.hookimpl\ndef {name}{signature_text(function)}: ...\n```\n\n"
        f"{inspect.getdoc(function)}\n"
    )


def blocks() -> dict[str, str]:
    """Every generated block's text, by name: ``register`` and each registration hook."""
    return {"register": render_register(), **{name: render_hook(name) for name in hookspecs.component_hooks()}}


def regenerate(text: str) -> str:
    """``text`` (docs/hooks.md) with every generated block rewritten; a block the file lacks is an error."""
    rendered = blocks()
    broken = [
        name for name in rendered
        if text.count(BEGIN.format(name=name)) != 1 or text.count(END.format(name=name)) != 1
    ]
    if broken:
        raise ValueError(f"docs/hooks.md needs one pair of marker comments for {', '.join(broken)}")

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in rendered:
            raise ValueError(f"docs/hooks.md has a generated block for {name}, which gankit/hookspecs.py lacks")
        return f"{BEGIN.format(name=name)}\n{rendered[name]}{END.format(name=name)}"

    return _BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [arg for arg in argv if not arg.startswith("--")]
    path = Path(paths[0] if paths else "docs/hooks.md")
    try:
        text = path.read_text(encoding="utf-8")
        updated = regenerate(text)
    except (OSError, ValueError) as error:  # a developer tool, but still one line, not a traceback
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if check:
        if updated != text:
            print(f"{path} is out of date: run python -m gankit.hookdocs {path}")
            return 1
        return 0
    if updated != text:
        path.write_text(updated, encoding="utf-8")
        print(f"rewrote the hook reference in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
