"""The plugin machinery through real hooks: registration of every kind, failure isolation, name lookup,
collisions, strict mode and the entry-point allow/deny lists (with the installed gankit-resnet plugin)."""
from __future__ import annotations

import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

import gankit
from gankit.cli import app
from gankit.components import DataSource, Loss, Regularizer
from gankit.errors import GankitError
from gankit.plugins import PluginSet, load_plugins, reset_default_plugins
from gankit.registry import Registry


def resnet_installed() -> bool:
    return any(ep.name == "resnet" for ep in metadata.entry_points(group="gankit"))


needs_resnet = pytest.mark.skipif(
    not resnet_installed(), reason="needs the example plugin: pip install -e plugins/gankit-resnet"
)


@pytest.fixture(autouse=True)
def plugin_environment(monkeypatch):
    """Each test starts without plugin environment variables and with a fresh process-wide plugin set."""
    for variable in ("GANKIT_STRICT_PLUGINS", "GANKIT_LOAD_PLUGINS", "GANKIT_DISABLE_PLUGINS"):
        monkeypatch.delenv(variable, raising=False)
    reset_default_plugins()
    yield
    reset_default_plugins()


def registry_with(*plugins: tuple[str, object]) -> Registry:
    """Builtins plus these local plugins (entry points left out, so installed plugins do not interfere)."""
    return Registry(load_plugins(plugins, entry_points=False))


# --- test plugins ---------------------------------------------------------------------------------------


def toy_architecture(*, shape, z_dim, hidden: int = 8):
    from torch import nn

    return nn.Linear(z_dim, shape[0]), nn.Sequential(nn.Linear(shape[0], 1), nn.Flatten(0))


class ToyLoss(Loss):
    def __init__(self, margin: float = 1.0):
        self.margin = margin


class ToyRegularizer(Regularizer):
    def __init__(self, weight: float = 10.0):
        self.weight = weight


class ToyData(DataSource):
    shape = (2,)

    def __init__(self, *, root=None, image_size=None, seed=0, count: int = 4):
        self.count = count


class EveryKind:
    """A plugin implementing each registration hook once."""

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("toy-arch", toy_architecture, description="a toy architecture", aliases=("ta",))

    @gankit.hookimpl
    def gankit_register_losses(self, register):
        register("toy-loss", ToyLoss, description="a toy loss")

    @gankit.hookimpl
    def gankit_register_regularizers(self, register):
        register("toy-reg", ToyRegularizer, description="a toy regularizer")

    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("toy-data", ToyData, description="a toy data source")


class Registers:
    """A plugin registering ``names`` (a name or a list) as architectures."""

    def __init__(self, names, factory=toy_architecture, **extra):
        self.names = [names] if isinstance(names, str) else list(names)
        self.factory = factory
        self.extra = extra

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        for name in self.names:
            register(name, self.factory, **self.extra)


class RaisesInLosses:
    """Registers an architecture, then its losses hook raises."""

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("half-registered", toy_architecture)

    @gankit.hookimpl
    def gankit_register_losses(self, register):
        raise RuntimeError("losses are broken")


class RaisesInDataSources:
    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        raise ValueError("no data today")


class RaisesInRegularizers:
    @gankit.hookimpl
    def gankit_register_regularizers(self, register):
        raise KeyError("clip")


class MisspeltHook:
    @gankit.hookimpl
    def gankit_register_architecture(self, register):  # missing the final "s"
        register("never-seen", toy_architecture)


# --- every kind registers through its hook --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, hook, name, factory",
    [
        ("architecture", "gankit_register_architectures", "toy-arch", toy_architecture),
        ("loss", "gankit_register_losses", "toy-loss", ToyLoss),
        ("regularizer", "gankit_register_regularizers", "toy-reg", ToyRegularizer),
        ("data", "gankit_register_data_sources", "toy-data", ToyData),
    ],
)
def test_each_hook_registers_its_kind(kind, hook, name, factory):
    registry = registry_with(("toys", EveryKind()))
    assert [plugin for plugin, _ in registry.plugins.hook_implementations(hook)][-1] == "toys"
    component = registry.get(kind, name)
    assert component.factory is factory
    assert component.plugin == "toys"
    assert component.qualified_name == f"toys:{name}"
    assert component.description == f"a toy {kind.replace('data', 'data source')}"
    assert name in registry.names(kind)
    assert registry.plugins.infos["toys"].provides[kind] == [name]


def test_builtins_register_through_the_same_hooks():
    registry = registry_with()
    assert registry.get("architecture", "dcgan").plugin == "dcgan"
    assert registry.get("loss", "bce").plugin == "losses"
    assert registry.get("data", "digits").plugin == "digits"
    assert all(info.source == "builtin" and info.status == "ok" for info in registry.plugins.infos.values())


def test_options_come_from_the_factory_signature():
    registry = registry_with(("toys", EveryKind()))
    component, options = registry.resolve("loss", "toy-loss:margin=2")
    assert options == {"margin": 2.0} and isinstance(options["margin"], float)
    built = registry.build("loss", "toy-loss:margin=0.5")
    assert built.value.margin == 0.5 and built.spec == "toys:toy-loss:margin=0.5"
    with pytest.raises(GankitError, match=r"no option 'margn'; valid options: margin \(float\) = 1.0"):
        registry.resolve("loss", "toy-loss:margn=2")
    with pytest.raises(GankitError, match="option 'weight' must be float, got 'heavy'"):
        registry.resolve("regularizer", "toy-reg:weight=heavy")
    # shape and z_dim are passed by the engine: they are not options a user can set.
    with pytest.raises(GankitError, match="no option 'z_dim'"):
        registry.resolve("architecture", "toy-arch:z_dim=3")


def test_listing_plugins_builds_nothing():
    built = []

    def counting_factory(**options):
        built.append(options)
        return ToyLoss()

    class CountingPlugin:
        @gankit.hookimpl
        def gankit_register_losses(self, register):
            register("counted", counting_factory)

    registry = registry_with(("counting", CountingPlugin()))
    assert "counted" in registry.names("loss")
    assert built == []


# --- failure isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plugin, hook, reason",
    [
        (RaisesInLosses(), "gankit_register_losses", "RuntimeError: losses are broken"),
        (RaisesInDataSources(), "gankit_register_data_sources", "ValueError: no data today"),
        (RaisesInRegularizers(), "gankit_register_regularizers", "KeyError: 'clip'"),
    ],
)
def test_a_raising_hook_fails_only_its_plugin(plugin, hook, reason):
    registry = registry_with(("broken", plugin), ("toys", EveryKind()))
    info = registry.plugins.infos["broken"]
    assert info.status == "failed"
    assert info.error == f"{hook} raised {reason}"
    # Everyone else registered, builtins and the plugin loaded after the broken one.
    assert registry.get("architecture", "toy-arch").plugin == "toys"
    assert registry.get("loss", "bce").plugin == "losses"
    assert registry.plugins.infos["toys"].status == "ok"


def test_a_failed_plugin_provides_nothing_even_from_hooks_that_worked():
    # Its architectures hook succeeded before its losses hook raised: a half-registered plugin is not used.
    registry = registry_with(("broken", RaisesInLosses()))
    assert registry.plugins.infos["broken"].status == "failed"
    assert "half-registered" not in registry.names("architecture")
    assert registry.plugins.infos["broken"].provides == {}
    with pytest.raises(GankitError, match="unknown architecture 'half-registered'"):
        registry.get("architecture", "half-registered")


def test_a_misspelt_hook_name_fails_the_plugin():
    registry = registry_with(("typo", MisspeltHook()), ("toys", EveryKind()))
    info = registry.plugins.infos["typo"]
    assert info.status == "failed"
    assert "gankit_register_architecture" in info.error and "misspelt" in info.error
    assert "never-seen" not in registry.names("architecture")
    assert registry.get("architecture", "toy-arch").plugin == "toys"


@pytest.mark.parametrize("factory", [None, "dcgan", object()])
def test_a_factory_that_is_not_callable_fails_the_plugin(factory):
    registry = registry_with(("bad-factory", Registers("not-a-factory", factory)))
    info = registry.plugins.infos["bad-factory"]
    assert info.status == "failed"
    assert "factory must be a class or callable" in info.error
    assert "not-a-factory" not in registry.names("architecture")


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_an_empty_or_non_string_name_fails_the_plugin(name):
    registry = registry_with(("nameless", Registers([name])))
    info = registry.plugins.infos["nameless"]
    assert info.status == "failed"
    assert "non-empty name" in info.error


@pytest.mark.parametrize("name", ["mine:dcgan", "width=3", "a,b"])
def test_a_name_that_a_spec_could_not_spell_fails_the_plugin(name):
    # Runs record plugin:name:key=value; such a name could neither be typed nor read back.
    info = registry_with(("spelling", Registers([name]))).plugins.infos["spelling"]
    assert info.status == "failed" and "may not contain ':', '=' or ','" in info.error


def test_a_plugin_registering_one_name_twice_fails():
    registry = registry_with(("twice", Registers(["echo", "Echo"])))
    info = registry.plugins.infos["twice"]
    assert info.status == "failed"
    assert "'echo'" in info.error and "twice" in info.error


def test_a_plugin_named_like_a_loaded_one_is_not_loaded():
    plugins = load_plugins([("dcgan", Registers("impostor"))], entry_points=False)
    registry = Registry(plugins)
    assert registry.get("architecture", "dcgan").plugin == "dcgan"
    assert "impostor" not in registry.names("architecture")
    failed = [info for info in plugins.infos.values() if info.status == "failed"]
    assert len(failed) == 1 and "already named 'dcgan'" in failed[0].error


def test_a_plugin_that_fails_to_import_is_recorded_and_the_cli_still_works(monkeypatch):
    broken = metadata.EntryPoint(name="broken-import", value="gankit_no_such_module_xyz", group="gankit")
    monkeypatch.setattr("gankit.plugins.metadata.entry_points", lambda group: [broken])
    result = CliRunner().invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    infos = {info["name"]: info for info in json.loads(result.output)}
    assert infos["broken-import"]["status"] == "failed"
    assert infos["broken-import"]["source"] == "entry point"
    assert infos["broken-import"]["error"] == "ModuleNotFoundError: No module named 'gankit_no_such_module_xyz'"
    assert infos["dcgan"]["status"] == "ok"


def test_building_the_registry_twice_does_not_repeat_what_plugins_provide():
    plugins = load_plugins([("toys", EveryKind())], entry_points=False)
    Registry(plugins)
    registry = Registry(plugins)
    assert plugins.infos["toys"].provides["architecture"] == ["toy-arch"]
    assert registry.names("architecture").count("toy-arch") == 1


# --- names ----------------------------------------------------------------------------------------------


def test_two_plugins_with_one_name_are_both_reachable_only_by_plugin_name():
    registry = registry_with(("alpha", Registers("twin")), ("beta", Registers("twin")))
    with pytest.raises(GankitError) as error:
        registry.get("architecture", "twin")
    assert "provided by several plugins" in str(error.value)
    assert "alpha:twin, beta:twin" in str(error.value)
    assert registry.get("architecture", "alpha:twin").plugin == "alpha"
    assert registry.get("architecture", "beta:twin").plugin == "beta"
    assert registry.resolve("architecture", "beta:twin:hidden=4")[1] == {"hidden": 4}
    # Both stay working plugins: a collision is not a failure.
    assert registry.plugins.infos["alpha"].status == registry.plugins.infos["beta"].status == "ok"


def test_a_plugin_may_take_a_builtin_name_without_hiding_the_builtin():
    registry = registry_with(("mine", Registers("dcgan")))
    with pytest.raises(GankitError, match="dcgan:dcgan, mine:dcgan"):
        registry.get("architecture", "dcgan")
    assert registry.get("architecture", "dcgan:dcgan").factory is not toy_architecture
    assert registry.get("architecture", "mine:dcgan").factory is toy_architecture


@pytest.mark.parametrize("spelling", ["wide_res_net", "Wide-Res-Net", "WIDE_RES-NET", "  wide-res-net "])
def test_names_ignore_case_and_dash_versus_underscore(spelling):
    registry = registry_with(("wide", Registers("Wide_Res_Net")))
    component = registry.get("architecture", spelling)
    assert component.name == "wide-res-net"
    assert registry.get("architecture", f"WIDE:{spelling.strip()}") is component


def test_aliases_find_the_component():
    registry = registry_with(("toys", EveryKind()), ("single", Registers("solo", aliases="Only_One")))
    assert registry.get("architecture", "TA").name == "toy-arch"
    assert registry.get("architecture", "only-one").name == "solo"  # a single string is one alias
    assert registry.get("architecture", "single:only_one").name == "solo"
    assert registry.get("architecture", "mnist-like".replace("mnist-like", "ta")).plugin == "toys"
    assert registry.get("data", "mnist-like").name == "digits"  # a builtin alias


def test_a_name_beats_another_plugins_alias():
    registry = registry_with(("named", Registers("shared")), ("aliased", Registers("other", aliases=("shared",))))
    assert registry.get("architecture", "shared").plugin == "named"


@pytest.mark.parametrize("spec", ["gone:dcgan", "losses:dcgan", ":dcgan"])
def test_a_wrong_plugin_suggests_the_plugins_that_have_the_name(spec):
    # E.g. a run's config.toml names a plugin that was uninstalled since.
    with pytest.raises(GankitError, match=r"unknown architecture 'dcgan' from plugin '\w*' for --arch; did you mean 'dcgan:dcgan'\?"):
        registry_with().get("architecture", spec)


def test_unknown_names_suggest_the_closest_one():
    registry = registry_with(("toys", EveryKind()))
    with pytest.raises(GankitError) as error:
        registry.get("loss", "toy-los")
    message = str(error.value)
    assert "unknown loss 'toy-los' for --loss; did you mean 'toy-loss'?" in message
    assert "available:" in message and "bce" in message and "toy-loss" in message
    with pytest.raises(GankitError, match="did you mean 'dcgan'"):
        registry.get("architecture", "dcgna")
    with pytest.raises(GankitError, match="unknown data 'toy-data' from plugin 'dcgan'"):
        registry.get("data", "dcgan:toy-data")


# --- strict mode ----------------------------------------------------------------------------------------


def test_strict_mode_reraises_a_hook_error(monkeypatch):
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    plugins = load_plugins([("broken", RaisesInDataSources())], entry_points=False)
    with pytest.raises(ValueError, match="no data today"):
        Registry(plugins)


def test_strict_mode_reraises_a_misspelt_hook(monkeypatch):
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    with pytest.raises(GankitError, match="gankit_register_architecture"):
        load_plugins([("typo", MisspeltHook())], entry_points=False)


def test_strict_mode_reraises_an_import_error(monkeypatch):
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    broken = metadata.EntryPoint(name="broken-import", value="gankit_no_such_module_xyz", group="gankit")
    monkeypatch.setattr("gankit.plugins.metadata.entry_points", lambda group: [broken])
    with pytest.raises(ModuleNotFoundError):
        load_plugins()


def test_strict_mode_off_when_zero(monkeypatch):
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "0")
    registry = registry_with(("broken", RaisesInDataSources()))
    assert registry.plugins.infos["broken"].status == "failed"


# --- entry points: the installed gankit-resnet plugin ---------------------------------------------------


@needs_resnet
def test_the_installed_entry_point_loads():
    registry = Registry(load_plugins())
    info = registry.plugins.infos["resnet"]
    assert (info.source, info.status, info.module) == ("entry point", "ok", "gankit_resnet.plugin")
    assert info.version == metadata.version("gankit-resnet")
    assert registry.get("architecture", "resnet").plugin == "resnet"


@needs_resnet
def test_disable_plugins_skips_an_entry_point(monkeypatch):
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "someone-else, resnet")
    registry = Registry(load_plugins())
    assert registry.plugins.infos["resnet"].status == "disabled"
    assert registry.plugins.infos["resnet"].provides == {}
    assert "resnet" not in registry.names("architecture")
    with pytest.raises(GankitError, match="unknown architecture 'resnet'"):
        registry.get("architecture", "resnet")
    assert "dcgan" in registry.names("architecture")  # builtins are never disabled


@needs_resnet
@pytest.mark.parametrize("allowed, loaded", [("resnet", True), ("someone-else", False), ("", False)])
def test_load_plugins_is_an_allow_list_of_entry_points(monkeypatch, allowed, loaded):
    monkeypatch.setenv("GANKIT_LOAD_PLUGINS", allowed)
    registry = Registry(load_plugins())
    assert registry.plugins.infos["resnet"].status == ("ok" if loaded else "disabled")
    assert ("resnet" in registry.names("architecture")) is loaded
    assert "dcgan" in registry.names("architecture")


@needs_resnet
def test_list_plugins_shows_disabled_entry_points(monkeypatch):
    monkeypatch.setenv("GANKIT_DISABLE_PLUGINS", "resnet")
    result = CliRunner().invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    (resnet,) = [info for info in json.loads(result.output) if info["name"] == "resnet"]
    assert resnet["status"] == "disabled"


def test_plugin_sets_are_independent():
    first = load_plugins([("toys", EveryKind())], entry_points=False)
    second = load_plugins(entry_points=False)
    assert "toys" in first.infos and "toys" not in second.infos
    assert isinstance(first, PluginSet)


def test_two_entry_points_with_one_name_are_not_resolved_silently(monkeypatch):
    first = metadata.EntryPoint(name="twin-plugin", value="gankit.builtins.dcgan", group="gankit")
    same_again = metadata.EntryPoint(name="twin-plugin", value="gankit.builtins.dcgan", group="gankit")
    other = metadata.EntryPoint(name="twin-plugin", value="gankit.builtins.losses", group="gankit")
    monkeypatch.setattr("gankit.plugins.metadata.entry_points", lambda group: [first, same_again, other])
    plugins = PluginSet()
    plugins.load_entry_points()
    # The same module found twice (an editable install seen twice on sys.path) loads once, silently...
    assert plugins.infos["twin-plugin"].status == "ok"
    assert plugins.infos["twin-plugin"].module == "gankit.builtins.dcgan"
    # ...but another module claiming the name is reported, not dropped.
    (rejected,) = [info for key, info in plugins.infos.items() if key != "twin-plugin"]
    assert rejected.module == "gankit.builtins.losses"
    assert rejected.status == "failed" and "already named 'twin-plugin'" in rejected.error


def test_every_name_is_recorded_qualified_so_the_run_can_be_rebuilt():
    registry = registry_with(("alpha", Registers("twin")), ("beta", Registers("twin")))
    built = registry.build("architecture", "Beta:TWIN:hidden=4", shape=(2,), z_dim=3)
    # The run's config.toml records this spec; gankit sample and --resume rebuild from it.
    assert built.spec == "beta:twin:hidden=4"
    assert registry.build("architecture", built.spec, shape=(2,), z_dim=3).component.plugin == "beta"
    # A unique name too, and an alias: a plugin installed later may take the bare name.
    toys = registry_with(("toys", EveryKind()))
    assert toys.build("loss", "toy-loss").spec == "toys:toy-loss"
    assert toys.build("architecture", "TA", shape=(2,), z_dim=3).spec == "toys:toy-arch"


# --- what users are shown: descriptions, aliases, gankit info, strict mode in the CLI -------------------


def test_list_plugins_json_shows_descriptions_and_aliases():
    result = CliRunner().invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    listing = {plugin["name"]: plugin for plugin in json.loads(result.output)}
    losses = {c["name"]: c for c in listing["losses"]["components"]}
    assert losses["least-squares"]["aliases"] == ["lsgan"]
    assert losses["least-squares"]["description"].startswith("LSGAN (Mao et al. 2017)")
    assert losses["least-squares"]["qualified_name"] == "losses:least-squares"
    assert listing["losses"]["provides"]["loss"] == list(losses)  # the short form stays as it was
    assert gankit.list_plugins() == json.loads(result.output)


def test_list_plugins_table_shows_descriptions_and_aliases():
    result = CliRunner().invoke(app, ["list-plugins"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = [line for line in result.output.splitlines() if "least-squares" in line and "lsgan" in line]
    assert row and "LSGAN (Mao et al. 2017)" in row[0]


class TypedOptions:
    """An architecture whose options cover annotations, defaults only, a required option and **kwargs."""

    @staticmethod
    def factory(*, shape, z_dim, width: int = 8, scale=0.5, name: str, label=None, **extra):
        return toy_architecture(shape=shape, z_dim=z_dim)

    @gankit.hookimpl
    def gankit_register_architectures(self, register):
        register("typed", self.factory, description="options of every sort", aliases=("tp",))


def test_info_lists_options_from_the_signature_without_the_engine_context(monkeypatch):
    registry = registry_with(("typed-plugin", TypedOptions()))
    monkeypatch.setattr("gankit.plugins._default", registry.plugins)
    monkeypatch.setattr("gankit.registry._default", registry)
    result = CliRunner().invoke(app, ["info", "arch:tp", "--json"])
    assert result.exit_code == 0, result.output
    details = json.loads(result.output)
    assert (details["kind"], details["name"], details["plugin"]) == ("architecture", "typed", "typed-plugin")
    assert details["description"] == "options of every sort" and details["aliases"] == ["tp"]
    assert details["options"] == [
        {"name": "width", "type": "int", "default": 8, "required": False},
        {"name": "scale", "type": "float", "default": 0.5, "required": False},
        {"name": "name", "type": "str", "default": None, "required": True},
        {"name": "label", "type": None, "default": None, "required": False},
    ]
    assert details["accepts_other_options"] is True
    table = CliRunner().invoke(app, ["info", "typed"], env={"COLUMNS": "120"}).output
    assert "options of every sort" in table and "(required)" in table and "shape" not in table


@pytest.mark.parametrize(
    "name, message",
    [
        ("digits", "'digits' names several components; choose one of: data:digits, metric:digits"),
        ("lsgn", "no component is named 'lsgn'; did you mean 'lsgan'?"),
        ("loss:lsgn", "unknown loss 'lsgn' for --loss; did you mean 'lsgan'?"),
        ("bce:x=1", "give a name without options"),
    ],
)
def test_info_of_an_ambiguous_or_unknown_name_is_one_line(name, message):
    result = CliRunner().invoke(app, ["info", name])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and message in result.output, result.output


def test_info_takes_a_kind_or_a_plugin_to_choose():
    for name, kind in [("data:digits", "data"), ("metric:digits", "metric"), ("metrics:digits", "metric")]:
        result = CliRunner().invoke(app, ["info", name, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["kind"] == kind


def test_strict_mode_in_the_cli_shows_the_traceback_and_names_the_plugin(monkeypatch):
    import traceback

    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    broken = metadata.EntryPoint(name="broken-import", value="gankit_no_such_module_xyz", group="gankit")
    monkeypatch.setattr("gankit.plugins.metadata.entry_points", lambda group: [broken])
    result = CliRunner().invoke(app, ["list-plugins"])
    assert result.exit_code == 1 and isinstance(result.exception, ModuleNotFoundError)
    shown = "".join(traceback.format_exception(result.exception))
    assert "Traceback" in shown and "raised by gankit plugin 'broken-import'" in shown


def test_strict_mode_names_the_plugin_whose_hook_raised(monkeypatch):
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    with pytest.raises(ValueError, match="no data today") as error:
        registry_with(("broken", RaisesInDataSources()))
    assert error.value.__notes__ == ["raised by gankit plugin 'broken' (GANKIT_STRICT_PLUGINS=1 re-raises plugin errors)"]


def test_strict_mode_names_the_plugin_whose_factory_raised(monkeypatch):
    def exploding(*, shape, z_dim):
        raise ZeroDivisionError("width 0")

    registry = registry_with(("fragile", Registers("fragile-arch", factory=exploding)))
    with pytest.raises(GankitError, match="'fragile:fragile-arch' failed to build: ZeroDivisionError: width 0"):
        registry.build("architecture", "fragile-arch", shape=(2,), z_dim=3)
    monkeypatch.setenv("GANKIT_STRICT_PLUGINS", "1")
    with pytest.raises(ZeroDivisionError) as error:
        registry.build("architecture", "fragile-arch", shape=(2,), z_dim=3)
    assert "raised by gankit plugin 'fragile'" in error.value.__notes__[0]
