"""The plugin contract has one source: registry.KINDS comes from the hookspecs, factories receive exactly the
context the hookspecs declare, and the builtins and example plugins import only gankit's public modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gankit
from gankit import hookspecs
from gankit.components import Augmentation, DataSource, Logger, Loss, Metric
from gankit.plugins import BUILTIN_PLUGINS, load_plugins
from gankit.registry import KINDS, Registry

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gankit"
BUILTINS = PACKAGE / "builtins"


# --- KINDS and the hookspecs ----------------------------------------------------------------------------


def test_kinds_are_the_hookspecs_declarations():
    declared = {
        spec.factories.kind: (hook, spec.factories.flag, spec.factories.engine_context)
        for hook, spec in hookspecs.component_hooks().items()
    }
    assert {name: (kind.hook, kind.flag, kind.context) for name, kind in KINDS.items()} == declared


def test_every_hookspec_declares_its_factories():
    hooks = {name for name, value in vars(hookspecs).items() if hasattr(value, "gankit_spec")}
    assert hooks == set(hookspecs.component_hooks())


def test_the_docstring_names_every_context_argument():
    for spec in hookspecs.component_hooks().values():
        for argument in spec.factories.context:
            assert f"`{argument.name}: {argument.type}`" in spec.__doc__


# --- what factories really receive ----------------------------------------------------------------------

received: dict[str, dict] = {}


def recording(kind, build):
    def factory(**kwargs):
        received[kind] = kwargs
        return build(**kwargs)

    return factory


class Points(DataSource):
    shape = (2,)

    def __init__(self, **_):
        import torch

        self.points = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.points)

    def __getitem__(self, index):
        return self.points[index]


class Mean(Metric):
    key = "mean"

    def evaluate(self, samples, *, data):
        return {"mean": float(samples.mean())}


def weighted_metric(*, weights: str = "", **kwargs):
    received["metric"] = {"weights": weights, **kwargs}
    return Mean()


def networks(*, shape, z_dim, **_):
    from torch import nn

    return nn.Linear(z_dim, shape[0]), nn.Sequential(nn.Linear(shape[0], 1), nn.Flatten(0))


class Probe:
    """Factories taking ``**kwargs``: they receive every context argument gankit passes."""

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("probe", recording("architecture", networks))

    @gankit.hookimpl
    def gankit_register_losses(self, register):
        from gankit.builtins.losses import BCELoss

        register("probe", recording("loss", lambda **_: BCELoss()))

    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("probe", recording("data", Points))

    @gankit.hookimpl
    def gankit_register_metrics(self, register):
        register("probe", recording("metric", lambda **_: Mean()))
        register("probe-weights", weighted_metric)

    @gankit.hookimpl
    def gankit_register_loggers(self, register):
        register("probe", recording("logger", lambda **_: Logger()))

    @gankit.hookimpl
    def gankit_register_augmentations(self, register):
        register("probe", recording("augmentation", lambda **_: Identity()))


class Identity(Augmentation):
    def __call__(self, x):
        return x


def test_factories_receive_exactly_the_declared_context(tmp_path):
    from gankit.config import RunConfig
    from gankit.engine import Trainer
    from gankit.evaluation import evaluate_checkpoint

    received.clear()
    registry = Registry(load_plugins([("probe", Probe())], entry_points=False))
    config = RunConfig.from_sources(None, {
        "arch": "probe:probe", "loss": "probe:probe", "data": "probe:probe", "metric": "probe:probe",
        "logger": ["probe:probe"], "augment": ["probe:probe"], "eval_every": 2, "eval_count": 8, "steps": 2, "batch_size": 8, "z_dim": 4,
        "device": "cpu",
    })
    Trainer(config, registry=registry).train(tmp_path / "run")
    run_context = {kind: set(kwargs) for kind, kwargs in received.items()}
    received.clear()
    evaluate_checkpoint(tmp_path / "run", "probe:probe-weights", count=8, weights="inception.pt", registry=registry)

    declared = {
        spec.factories.kind: {argument.name for argument in spec.factories.context if not argument.when}
        for spec in hookspecs.component_hooks().values()
    }
    assert run_context == {
        kind: declared[kind] for kind in ("architecture", "loss", "data", "metric", "logger", "augmentation")
    }
    # gankit eval: the metric also gets --weights, the only context passed conditionally; the data and the
    # architecture are rebuilt with the same context as in the run.
    assert {kind: set(kwargs) for kind, kwargs in received.items()} == {
        "metric": {argument.name for argument in hookspecs.gankit_register_metrics.factories.context},
        "data": declared["data"], "architecture": declared["architecture"],
    }
    assert received["metric"]["weights"] == "inception.pt"


# --- public modules -------------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").exists() or (ROOT / relative / "__init__.py").exists()


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in the file, function-level ones included; ``from a import b``
    counts as importing ``a.b`` when that is a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            modules = {f"{base}.{alias.name}" for alias in node.names}
            modules = {name if is_module(name) else base for name in modules}
            found += [(node.lineno, name) for name in sorted(modules)]
    return found


BUILTIN_HELPERS = sorted(
    module_name(path) for path in BUILTINS.glob("*.py")
    if path.name != "__init__.py" and module_name(path) not in BUILTIN_PLUGINS
)


def plugin_code() -> list[Path]:
    """The builtins, the example plugins' packages and the test plugins written from the docs alone (their
    tests may use gankit's test helpers)."""
    paths = sorted(BUILTINS.glob("*.py"))
    for plugin in sorted([*(ROOT / "plugins").iterdir(), *(ROOT / "tests" / "plugins").iterdir()]):
        paths += sorted(p for p in plugin.rglob("*.py") if "tests" not in p.relative_to(plugin).parts)
    return paths


@pytest.mark.parametrize("path", plugin_code(), ids=lambda path: str(path.relative_to(ROOT)))
def test_plugins_import_only_public_gankit_modules(path):
    package = module_name(path).rpartition(".")[0] if path.name != "__init__.py" else module_name(path)
    allowed = set(hookspecs.PUBLIC_MODULES)
    if path.parent == BUILTINS:
        # A builtin may use the builtins' helper modules, as a third-party package uses its own modules, but
        # never another plugin's module: that is what a third party could not do.
        allowed |= set(BUILTIN_HELPERS) | {"gankit.builtins"}
    private = [
        f"line {line}: {name}" for line, name in imported_modules(path, package)
        if (name == "gankit" or name.startswith("gankit.")) and name not in allowed
    ]
    assert not private, f"{path.relative_to(ROOT)} imports gankit modules outside the public API: {private}"


def test_the_import_check_sees_a_private_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def late():\n    from gankit.cache import cache_directory\n    from gankit import imagecache\n")
    assert [name for _, name in imported_modules(sample, "gankit.builtins")] == ["gankit.cache", "gankit.imagecache"]


def test_the_builtin_helpers_are_not_plugins():
    assert BUILTIN_HELPERS == [
        "gankit.builtins.conditioning", "gankit.builtins.convnets", "gankit.builtins.packing",
        "gankit.builtins.rendered_digits",
    ]


def test_public_modules_are_listed_in_the_plugin_guide():
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = guide.split("## Public modules", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("- `")}
    assert listed == set(hookspecs.PUBLIC_MODULES)


def test_the_image_module_exports_what_it_documents():
    from gankit import images

    missing = [name for name in images.__all__ if not hasattr(images, name)]
    assert not missing
    public = [getattr(images, name) for name in images.__all__]
    undocumented = [value for value in public if callable(value) and not value.__doc__]
    assert not undocumented
