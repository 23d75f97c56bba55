import pytest

from cifar_exp.errors import ConfigError
from cifar_exp.registry import Registry


def test_build_passes_options_and_lists_names():
    reg = Registry("widget")

    @reg.register("b")
    def make_b(size: int = 1):
        return ("b", size)

    @reg.register("a")
    def make_a():
        return "a"

    assert reg.names() == ["a", "b"]
    assert reg.build("b", size=3) == ("b", 3)


def test_unknown_name_lists_registered_names():
    reg = Registry("widget")
    reg.register("alpha")(lambda: None)
    reg.register("beta")(lambda: None)
    with pytest.raises(
        ConfigError, match="unknown widget 'gamma'; registered widgets: alpha, beta"
    ):
        reg.build("gamma")


def test_unknown_option_names_accepted_ones():
    reg = Registry("widget")
    reg.register("a")(lambda size=1, depth=2: None)
    with pytest.raises(
        ConfigError, match=r"does not take option\(s\) widht; it takes: size, depth"
    ):
        reg.build("a", widht=3)


def test_duplicate_registration_is_refused():
    reg = Registry("widget")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: None)
