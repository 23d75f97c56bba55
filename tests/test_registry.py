from dataclasses import dataclass

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from cifar_exp.components.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.datasets import DATASETS
from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.registry import Options, Registry, require
from helpers.paths import group_options

REGISTRIES = [MODELS, OPTIMIZERS, SCHEDULERS, DATASETS]


@dataclass
class WidgetOptions(Options):
    size: int = 1

    def check(self) -> None:
        require(self.size >= 1, "size", ">= 1", self.size)


def widgets() -> Registry:
    reg = Registry("widget")
    reg.register("b", WidgetOptions)(lambda o, extra: ("b", o.size, extra))
    reg.register("a", Options)(lambda o: "a")
    return reg


def test_build_passes_typed_options_and_lists_names():
    reg = widgets()
    assert reg.names() == ["a", "b"]
    assert reg.build({"name": "b", "size": 3}, "x") == ("b", 3, "x")
    assert reg.options({"name": "b"}) == WidgetOptions(name="b", size=1)


def test_storing_the_schemas_names_each_after_its_option():
    reg = Registry("gadget")
    reg.register("b", WidgetOptions)(lambda o: None)
    assert "gadget_b_schema.yaml" not in ConfigStore.instance().list("")  # registering alone
    widgets().store_schemas()
    stored = ConfigStore.instance().load("widget_b_schema.yaml").node
    assert OmegaConf.to_object(stored) == WidgetOptions(name="b", size=1)


@pytest.mark.parametrize(
    "node, message",
    [
        ({"name": "gamma"}, "unknown widget 'gamma'; registered widgets: a, b"),
        ({"name": "b", "size": 0}, "widget.size must be >= 1, got 0"),
        ({"name": "b", "size": "abc"}, "widget.size: Value 'abc' of type 'str' could not be"),
        ({"name": "b", "widht": 3}, "widget.widht: Key 'widht' not in 'WidgetOptions'"),
    ],
)
def test_bad_options_get_one_line_naming_the_key(node, message):
    with pytest.raises(ConfigError) as err:
        widgets().build(node, "x")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_duplicate_registration_is_refused():
    reg = widgets()
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", Options)(lambda o: None)


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.group)
def test_every_yaml_option_composes_to_its_registered_schema(compose, registry):
    assert registry.names() == group_options(registry.group)
    for name in registry.names():
        node = compose([f"{registry.group}={name}"])[registry.group]
        assert node.name == name
        assert OmegaConf.get_type(node) is type(registry.options(node))
