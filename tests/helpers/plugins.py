"""Skipping a test whose Hydra plugin is not installed."""

import importlib.util

import pytest


def needs_plugin(module: str) -> pytest.MarkDecorator:
    """Skip unless the Hydra plugin `module` (e.g. hydra_plugins.hydra_joblib_launcher) is
    installed; without any plugin even the hydra_plugins namespace is missing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return pytest.mark.skipif(
        not found, reason=f"{module} is not installed; install it with: pip install -e '.[sweeps]'"
    )
