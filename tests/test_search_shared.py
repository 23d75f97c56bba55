"""A study shared by several searches, on a real PostgreSQL server started by the test (and
on SQLite): searches at once from their own sweep folders, storage URLs that cannot work,
and a trial whose search was SIGKILLed reclaimed by another after the grace period."""

from __future__ import annotations

import sys

import pytest

from helpers.plugins import needs_plugin
from helpers.postgres import free_port, postgres  # noqa: F401 (a fixture)

needs_optuna = needs_plugin("optuna")
pytestmark = needs_optuna


def refusal(url: str) -> str:
    """The one line open_storage refuses `url` with (the CLI's path: see the password test)."""
    from omegaconf import OmegaConf

    from cifar_exp.errors import UserError
    from cifar_exp.sweeps.search import open_storage

    options = OmegaConf.create({"heartbeat_interval": 60, "grace_period": 180, "stale_retries": 3})
    with pytest.raises(UserError) as refused:
        open_storage(url, options)
    return str(refused.value)


def test_a_server_that_does_not_answer_is_one_line_naming_the_storage():
    pytest.importorskip("psycopg", reason="no psycopg: pip install -e '.[dev]'")
    port = free_port()
    line = refusal(f"postgresql://cifar:secret@127.0.0.1:{port}/db")
    assert line.startswith(f"hydra.sweeper.storage=postgresql://cifar:***@127.0.0.1:{port}/db: ")
    assert "the database server does not answer" in line
    assert "check that it runs and that the host and port in the URL reach it" in line


def test_a_missing_driver_is_one_line_saying_what_to_install(monkeypatch):
    # A psycopg that cannot be imported, as on a machine without the sweeps extra.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    line = refusal("postgresql://cifar:secret@127.0.0.1:1/db")
    assert "no driver for postgresql:// is installed" in line
    assert "pip install 'psycopg[binary]'" in line
    line = refusal("postgresql+psycopg2://cifar:secret@127.0.0.1:1/db")
    assert "pip install psycopg2-binary, or write postgresql:// to use psycopg 3" in line
