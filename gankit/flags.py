"""Command-line flags derived from RunConfig's fields: the options of ``gankit run`` and ``gankit bench``, their
``--help`` text and the options tables of docs/cli.md, so a setting is declared once (gankit/config.py).

No torch here: ``gankit --help`` builds these commands.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Mapping, Optional

import typer

from gankit.config import Setting, settings

# The sections of the options tables of `gankit run` in docs/cli.md, in order.
SECTIONS = ("Components", "Training", "Outputs", "Evaluation", "Speed", "Reliability", "Files")
DOCS_START = "<!-- {name} options: generated from RunConfig by scripts/cli_docs.py; edit gankit/config.py -->"
DOCS_END = "<!-- end of {name} options -->"


@dataclass(frozen=True)
class Flag:
    """One command-line option: the Python parameter, its type, the flag's names and how it shows."""

    name: str  #: the parameter (and, for a setting, the RunConfig key)
    annotation: Any  #: the Python type Typer parses the value as
    declarations: tuple[str, ...]  #: e.g. ("--batch-size",), ("--compile/--no-compile",)
    shown: Setting
    default: Any = None  #: the parameter's default: None means "not given"
    is_setting: bool = True

    def option_names(self) -> str:
        """The option as docs/cli.md's first cell shows it, e.g. ``--batch-size N`` or ``--compile`` / ``--no-compile``."""
        names = [name for declaration in self.declarations for name in declaration.split("/")]
        if len(names) > 1:
            return " / ".join(f"`{name}`" for name in names)
        return f"`{names[0]}{' ' + self.shown.metavar if self.shown.metavar else ''}`"

    def parameter(self) -> inspect.Parameter:
        option = typer.Option(*self.declarations, help=help_text(self.shown, self.default_text()),
                              metavar=self.shown.metavar, show_default=False)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default,
                                 annotation=Annotated[self.annotation, option])

    def default_text(self) -> str:
        return self.shown.default_text or "off"


def setting_flag(field: dataclasses.Field, shown: Setting | None = None, default: Any = None) -> Flag:
    """The flag of a RunConfig field; ``shown`` and ``default`` let another command (bench) say it its own way."""
    shown = shown or field.metadata["setting"]
    flag = "--" + field.name.replace("_", "-")
    base = field.type.replace("| None", "").strip()
    if base == "bool" and shown.flag:  # one-sided, e.g. --no-cache: given, it sets the opposite of the default
        return Flag(field.name, bool, (shown.flag,), shown, default=False)
    if base == "bool":
        return Flag(field.name, Optional[bool], (f"{flag}/--no-{flag[2:]}",), shown, default)
    annotation = {"int": int, "float": float, "str": str, "list[str]": list[str], "list[float]": str}[base]
    return Flag(field.name, Optional[annotation], (shown.flag or flag,), shown, default)


def run_flags() -> list[Flag]:
    """A flag for every RunConfig setting, in declaration order."""
    return [setting_flag(field) for field in settings()]


def help_text(shown: Setting, default_text: str) -> str:
    return f"{shown.help}  [default: {default_text}]".replace("`", "")


def default_text(field: dataclasses.Field) -> str:
    """The default of a setting as users read it: the declared text, else the field's default value."""
    shown: Setting = field.metadata["setting"]
    if shown.default_text:
        return shown.default_text
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def with_default_texts(flags: Iterable[Flag]) -> list[Flag]:
    """The flags with each setting's default spelled out for --help and docs/cli.md."""
    fields = {field.name: field for field in settings()}
    return [
        dataclasses.replace(flag, shown=dataclasses.replace(flag.shown, default_text=default_text(fields[flag.name])))
        if flag.is_setting and flag.name in fields and not flag.shown.default_text else flag
        for flag in flags
    ]


def command(function: Callable, flags: Iterable[Flag]) -> Callable:
    """``function(**values)`` with the signature Typer reads its options from: one parameter per flag."""
    function.__signature__ = inspect.Signature([flag.parameter() for flag in flags])
    return function


def setting_values(flags: Iterable[Flag], values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings among a command's parsed values, as RunConfig keys (None: not given)."""
    found = {}
    for flag in flags:
        if not flag.is_setting:
            continue
        value = values.get(flag.name)
        if flag.annotation is bool:  # a one-sided negative flag: given, it sets the opposite of the default
            field = next(f for f in settings() if f.name == flag.name)
            value = (not field.default) if value else None
        found[flag.name] = value
    return found


def options_markdown(flags: Iterable[Flag], sections: Iterable[str] | None = None) -> str:
    """The options tables of a command for docs/cli.md: one per section (``### Section``), or one table."""
    flags = list(flags)
    header = "| option | default | meaning |\n|---|---|---|\n"

    def rows(chosen: list[Flag]) -> str:
        return "".join(
            f"| {flag.option_names()} | {_code(flag.default_text())} | {_meaning(flag.shown)} |\n" for flag in chosen
        )

    if sections is None:
        return header + rows(flags)
    return "\n".join(
        f"### {section}\n\n{header}{rows([flag for flag in flags if flag.shown.section == section])}"
        for section in sections if any(flag.shown.section == section for flag in flags)
    )


def _meaning(shown: Setting) -> str:
    text = shown.help + (f" {shown.details}" if shown.details else "")
    if shown.choices:
        text += f" One of {', '.join(f'`{choice}`' for choice in shown.choices)}."
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    # A default that is a value (64, adam, runs/...) is code; a phrase ("the data's", "off") is not.
    if "`" in text or " " in text or text in ("on", "off", "none", "unset"):
        return text
    return f"`{text}`"


def replace_generated(document: str, name: str, generated: str) -> str:
    """``document`` with the text between the markers of ``name`` replaced by ``generated``."""
    start, end = DOCS_START.format(name=name), DOCS_END.format(name=name)
    if start not in document or end not in document:
        raise ValueError(f"docs/cli.md lacks the markers of the {name} options")
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n\n{generated.strip()}\n\n{end}{tail}"
