"""Meta-tests of gankit's shape (issue 13): no import cycle among its modules, counting imports inside
functions; no god object; no long function. Each test names what breaks the rule, file and line."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gankit"

MAX_PUBLIC_ATTRIBUTES = 12
MAX_METHODS = 15
MAX_FUNCTION_LINES = 50

# Records with one field per setting or per measurement: the fields are the point, they hold no behaviour.
LARGE_RECORDS = {
    "config.py:RunConfig": "one field per run setting; settings are declared once, here",
    "bench.py:BenchResult": "one field per reported measurement of gankit bench --json",
}
# Functions over MAX_FUNCTION_LINES, each with its reason. Remove an entry when the function is split.
LONG_FUNCTIONS = {
    "step.py:train_step": "the GAN update, kept in one piece to read top to bottom (as nanoGPT's train.py)",
    "builtins/rendered_digits.py:_render_one": "the seeded digit renderer: splitting it risks moving random draws (pinned runs)",
    "imagecache.py:load_images": "the cache build with its cleanup on interruption, in one try/finally",
    "runfolder.py:writing_run": "the run folder's lock as one context manager: claim, yield, release",
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the gankit package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The gankit modules ``name`` imports anywhere in its file: at the top, in functions, under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule imported by name
    return {target for target in targets if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a cycle or several."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "gankit.engine" in graph["gankit.runs"]  # `from gankit.engine import Trainer` inside new_run
    assert "gankit.api" in graph["gankit"]  # inside the package's __getattr__


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_gankit_modules():
    graph = import_graph()
    # One lazy edge is allowed: the package's __getattr__ loads gankit.api on first use of gankit.train & co,
    # after gankit is imported (plugins reach gankit.hookimpl through the package, so every module may import it).
    graph["gankit"].discard("gankit.api")
    assert cycles(graph) == []


def _key(path: Path, name: str) -> str:
    return f"{path.relative_to(PACKAGE).as_posix()}:{name}"


def _public_attributes(cls: ast.ClassDef) -> set[str]:
    """Annotated class fields (dataclasses) and ``self.x = ...`` anywhere in its methods, without a leading _."""
    names = {b.target.id for b in cls.body if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name)}
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            for part in ast.walk(target) if target is not None else ():
                if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and part.value.id == "self":
                    names.add(part.attr)
    return {name for name in names if not name.startswith("_")}


def classes():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                yield path, node


def test_no_class_is_a_god_object():
    too_big = []
    for path, cls in classes():
        if _key(path, cls.name) in LARGE_RECORDS:
            continue
        methods = [b for b in cls.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
        attributes = _public_attributes(cls)
        if len(methods) > MAX_METHODS or len(attributes) > MAX_PUBLIC_ATTRIBUTES:
            too_big.append(f"{_key(path, cls.name)} (line {cls.lineno}): {len(methods)} methods, "
                           f"{len(attributes)} public attributes {sorted(attributes)}")
    assert too_big == []


def test_no_function_is_too_long():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and _key(path, node.name) not in LONG_FUNCTIONS:
                    too_long.append(f"{_key(path, node.name)} (line {node.lineno}): {lines} lines")
    assert too_long == []


def test_every_listed_exception_still_exists_and_still_needs_to_be_one():
    """An entry stays only while its function is still long (or its record large): the lists only shrink."""
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[_key(path, node.name)] = node.end_lineno - node.lineno + 1
    stale = [key for key in LONG_FUNCTIONS if lengths.get(key, 0) <= MAX_FUNCTION_LINES]
    records = {_key(path, cls.name): len(_public_attributes(cls)) for path, cls in classes()}
    stale += [key for key in LARGE_RECORDS if records.get(key, 0) <= MAX_PUBLIC_ATTRIBUTES]
    assert stale == []
