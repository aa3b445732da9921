"""Component specs on the command line: ``[plugin:]name[:key=value,...]`` with typed options."""
from __future__ import annotations

import pytest

from gankit.errors import GankitError
from gankit.options import convert_options, format_spec, parse_spec


def test_parse_name_plugin_and_options():
    assert parse_spec("dcgan").name == "dcgan"
    spec = parse_spec("myplugin:clip")
    assert (spec.plugin, spec.name, spec.options) == ("myplugin", "clip", {})
    spec = parse_spec("clip:value=0.02")
    assert (spec.plugin, spec.name, spec.options) == (None, "clip", {"value": "0.02"})
    spec = parse_spec("p:dcgan:width=8,norm=layer")
    assert (spec.plugin, spec.name, spec.options) == ("p", "dcgan", {"width": "8", "norm": "layer"})


@pytest.mark.parametrize("text", ["", "a:b:c", "dcgan:oops,width=8"])
def test_malformed_specs(text):
    with pytest.raises(GankitError):
        parse_spec(text)


def test_a_list_value_goes_on_after_its_key():
    spec = parse_spec("diffaug:policy=color,translation,cutout,speed=2")
    assert spec.options == {"policy": "color,translation,cutout", "speed": "2"}
    assert format_spec("diffaug", {"policy": "color,cutout"}) == "diffaug:policy=color,cutout"
    # A stray item after a number is no list: converting the option refuses it in one line.
    with pytest.raises(GankitError, match="width"):
        convert_options("architecture 'x'", factory, parse_spec("x:width=8,oops").options, {"shape", "z_dim"})


def factory(*, shape, z_dim, width: int = 64, scale: float = 1.0, norm: str = "batch", flag: bool = False):
    return None


def test_options_are_converted_to_the_factory_types():
    options = convert_options("architecture 'x'", factory, {"width": "8", "scale": "2", "flag": "yes"}, {"shape", "z_dim"})
    assert options == {"width": 8, "scale": 2.0, "flag": True}
    assert format_spec("x", options) == "x:width=8,scale=2.0,flag=true"


def test_unknown_option_lists_the_valid_ones_but_not_engine_context():
    with pytest.raises(GankitError) as info:
        convert_options("architecture 'x'", factory, {"depth": "3"}, {"shape", "z_dim"})
    message = str(info.value)
    assert "no option 'depth'" in message and "width (int) = 64" in message and "norm (str)" in message
    assert "shape" not in message
    with pytest.raises(GankitError, match="no option 'shape'"):
        convert_options("architecture 'x'", factory, {"shape": "3"}, {"shape", "z_dim"})


def test_wrong_type_is_an_error():
    with pytest.raises(GankitError, match="option 'width' must be int, got 'wide'"):
        convert_options("architecture 'x'", factory, {"width": "wide"}, set())
