"""Fixtures shared by the tests; the helpers they import live in tests/helpers/."""

import pytest

from helpers.paths import CONF_DIR


@pytest.fixture
def compose():
    """Compose the real config with Hydra's compose API: compose(overrides) -> DictConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cifar_exp.rundir import setup_hydra

    setup_hydra()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda overrides=(): hydra_compose("config", overrides=list(overrides))


@pytest.fixture
def compose_tool():
    """Compose an entrypoint's config (inspect, lr_find, ...): compose_tool(name, overrides)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cifar_exp.rundir import setup_hydra

    setup_hydra()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda name, overrides=(): hydra_compose(name, overrides=list(overrides))
