"""Fixtures shared by the tests; the helpers they import live in tests/helpers/.

Tests under tests/integration/ are marked `integration` here, as they are collected: they
start fresh processes (the CLI, signals, torchrun, launchers, servers, a browser) or train
for half a minute on real images, which the default run (`pytest`) leaves out and
`pytest -m integration` runs. Elsewhere the helpers that start such a process refuse
(helpers/cli.py), so a slow test cannot slip into the default run.

The default run spreads the tests over two worker processes (pytest-xdist, `-n 2` in
pyproject.toml); each worker then keeps torch to its share of the cores.
"""

import os
from pathlib import Path

import pytest

from helpers import cli
from helpers.paths import CONF_DIR

INTEGRATION = Path(__file__).parent / "integration"


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # threads x processes within the cores: more only makes small ops slower
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the processes a test starts, likewise


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item):
    """Before any fixture of the test is set up (a module's fixture too): whether it may start
    fresh processes."""
    cli.FRESH_PROCESSES.allowed = item.get_closest_marker("integration") is not None


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """A run in process sets torch's threads (trainer.num_threads): the next test starts with
    the machine's default again, whatever the order the tests run in."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose():
    """Compose the real config with Hydra's compose API: compose(overrides) -> DictConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cifar_exp.hydra_setup import setup_hydra

    setup_hydra()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda overrides=(): hydra_compose("config", overrides=list(overrides))


@pytest.fixture
def compose_tool():
    """Compose an entrypoint's config (inspect, lr_find, ...): compose_tool(name, overrides)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cifar_exp.hydra_setup import setup_hydra

    setup_hydra()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda name, overrides=(): hydra_compose(name, overrides=list(overrides))


@pytest.fixture
def bench(monkeypatch):
    """import_module for the scripts of scripts/bench, which import each other by bare name as
    when run from there: a test runs one in process (helpers/bench.run_main), sparing the
    seconds a fresh process spends importing torch."""
    import importlib

    from helpers.bench import BENCH

    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """An MLflow SQLite store for a test module (creating its tables takes seconds); each
    test logs into its own experiment (helpers/mlflow_store.py reads them back)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
