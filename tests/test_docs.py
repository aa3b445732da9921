"""Meta-tests in the style of datasette's: every hook is documented and tested, every CLI command and option
is documented, and the plugin examples in the docs really register what they show."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import typer.main

import gankit.cli
from gankit import hookspecs
from gankit.plugins import load_plugins
from gankit.registry import KINDS, Registry

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TESTS = ROOT / "tests"


def hook_names() -> list[str]:
    # pluggy's HookspecMarker("gankit") marks each specification with a ``gankit_spec`` attribute.
    return sorted(
        name for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, "gankit_spec")
    )


def sections(path: Path) -> dict[str, str]:
    """``## heading`` -> the text up to the next ``## `` heading."""
    found: dict[str, str] = {}
    heading = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            found[heading] = ""
        elif heading is not None:
            found[heading] += line + "\n"
    return found


def cli_commands() -> dict:
    # Typer may vendor its own click: tell options from arguments by param_type_name, not by class.
    return dict(typer.main.get_command(gankit.cli.app).commands)


def test_hookspecs_are_found():
    names = hook_names()
    # The four component kinds at least; more hooks (metrics, loggers...) are covered as they are added.
    assert {kind.hook for kind in KINDS.values()} <= set(names)


# --- hooks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook):
    documented = sections(DOCS / "hooks.md")
    assert hook in documented, f"docs/hooks.md has no '## {hook}' section"
    assert len(documented[hook].split()) >= 20, f"the '## {hook}' section of docs/hooks.md is nearly empty"


def test_the_hook_reference_is_generated_from_the_hookspecs():
    # docs/hooks.md's framed blocks must be exactly what gankit/hookspecs.py renders to.
    from gankit.hookdocs import regenerate

    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    assert regenerate(text) == text, "docs/hooks.md is out of date: run python -m gankit.hookdocs"


def test_the_hook_reference_check_notices_a_hand_edit():
    from gankit.hookdocs import regenerate

    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    edited = text.replace("`z_dim: int`", "`z_dim: float`", 1)
    assert edited != text and regenerate(edited) == text
    block = "<!-- end of generated gankit_register_losses -->"
    with pytest.raises(ValueError, match="gankit_register_losses"):
        regenerate(text.replace(block, ""))


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_test(hook):
    test_files = [path for path in TESTS.glob("test_*.py") if path.name != Path(__file__).name]
    users = [path.name for path in test_files if hook in path.read_text(encoding="utf-8")]
    assert users, f"no test under tests/ implements or names the hook {hook}"


def test_every_registry_kind_has_a_hookspec():
    assert {kind.hook for kind in KINDS.values()} <= set(hook_names())


# --- CLI ------------------------------------------------------------------------------------------------


def documented_flags(section: str) -> set[str]:
    """The flags a section documents: the first cell of each table row or the head of each list item."""
    flags = set()
    for line in section.splitlines():
        match = re.match(r"\s*(?:\||[-*])\s*(`[^|]*?`)(?:\s*\||:|\s+-|$)", line)
        if match:
            flags.update(re.findall(r"(-{1,2}[a-z][a-z0-9-]*)", match.group(1)))
    return flags


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_every_command_is_documented(command):
    documented = sections(DOCS / "cli.md")
    assert f"gankit {command}" in documented, f"docs/cli.md has no '## gankit {command}' section"


@pytest.mark.parametrize(
    "command, option",
    [
        (name, option)
        for name, command in sorted(cli_commands().items())
        for param in command.params
        if param.param_type_name == "option"
        for option in param.opts
        if option.startswith("--")
    ],
)
def test_every_option_is_documented(command, option):
    section = sections(DOCS / "cli.md").get(f"gankit {command}", "")
    assert option in documented_flags(section), (
        f"docs/cli.md: the '## gankit {command}' section does not document {option} "
        "(add a table row starting with `" + option + "`)"
    )


@pytest.mark.parametrize(
    "command, argument",
    [
        (name, param.name)
        for name, command in sorted(cli_commands().items())
        for param in command.params
        if param.param_type_name == "argument"
    ],
)
def test_every_argument_is_documented(command, argument):
    section = sections(DOCS / "cli.md").get(f"gankit {command}", "")
    assert f"`{argument.upper()}`" in section, f"docs/cli.md: '## gankit {command}' does not explain {argument.upper()}"


@pytest.mark.parametrize("command", sorted(cli_commands()))
def test_documented_options_exist(command):
    # The reverse check: a flag that was renamed or removed must leave the docs too.
    click_command = cli_commands()[command]
    real = {opt for param in click_command.params for opt in param.opts + param.secondary_opts}
    section = sections(DOCS / "cli.md").get(f"gankit {command}", "")
    stale = documented_flags(section) - real
    assert not stale, f"docs/cli.md documents options that 'gankit {command}' does not have: {sorted(stale)}"


def test_global_options_are_documented():
    group = typer.main.get_command(gankit.cli.app)
    section = sections(DOCS / "cli.md").get("gankit", "")
    for param in group.params:
        for option in param.opts:
            assert option in documented_flags(section), f"docs/cli.md '## gankit' does not document {option}"


# --- examples in the docs -------------------------------------------------------------------------------


def plugin_examples() -> list[tuple[str, int, str]]:
    """Complete plugin examples: python blocks that import gankit and implement a hook."""
    examples = []
    for path in sorted(DOCS.glob("*.md")):
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        for index, block in enumerate(blocks):
            if "import gankit" in block and "@gankit.hookimpl" in block:
                examples.append((path.name, index, block))
    return examples


def load_example(document: str, index: int, code: str) -> types.ModuleType:
    module = types.ModuleType(f"docs_example_{Path(document).stem}_{index}")
    exec(compile(code, f"docs/{document} (python block {index})", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(
    "document, index, code", plugin_examples(), ids=[f"{d}-{i}" for d, i, _ in plugin_examples()]
)
def test_plugin_examples_in_the_docs_register(document, index, code):
    if "gankit_resnet" in code:
        pytest.importorskip("gankit_resnet", reason="the worked example needs pip install -e plugins/gankit-resnet")
    module = load_example(document, index, code)
    registry = Registry(load_plugins([("example", module)], entry_points=False))
    info = registry.plugins.infos["example"]
    assert info.status == "ok", info.error
    registered = re.findall(r"register\(\s*\"([^\"]+)\"", code)
    provided = [name for names in info.provides.values() for name in names]
    assert registered and sorted(provided) == sorted(registered)


def test_the_hook_reference_examples_train_together(tmp_path):
    # The architecture, loss, regularizer and data source of docs/hooks.md, combined in a 3-step run.
    from gankit.config import RunConfig
    from gankit.engine import Trainer

    modules = [
        ("example-" + str(index), load_example(document, index, code))
        for document, index, code in plugin_examples()
        if document == "hooks.md"
    ]
    registry = Registry(load_plugins(modules, entry_points=False))
    config = RunConfig.from_sources(
        None,
        {
            "arch": "tiny-mlp:hidden=16", "loss": "my-hinge:margin=2", "reg": ["drift"], "data": "circle:count=256",
            "steps": 3, "batch_size": 32, "z_dim": 4, "device": "cpu", "log_every": 1,
        },
    )
    trainer = Trainer(config, registry=registry)
    assert config.batch_size == 32  # the user's setting beats the data source's recommendation
    assert config.betas == [0.0, 0.9]  # the loss's recommendation, not set by the user
    trainer.train(tmp_path / "run")
    assert trainer.step == 3
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 3


def test_docs_index_links_every_document():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for path in DOCS.glob("*.md"):
        if path.name != "index.md":
            assert f"({path.name})" in index, f"docs/index.md does not link {path.name}"


def test_relative_links_in_the_docs_resolve():
    for path in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"docs/{path.name} links to missing {target}"
