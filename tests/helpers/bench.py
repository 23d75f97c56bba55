"""Running a script of scripts/bench inside the test's process, as `python scripts/bench/<name>.py`
runs it (the `bench` fixture of conftest.py imports it by name)."""

import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers.paths import REPO

BENCH = REPO / "scripts" / "bench"


def run_main(module: ModuleType, *args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`module`.main() with `args`, as `python scripts/bench/<module>.py *args` runs it."""
    monkeypatch.setattr(sys, "argv", [f"scripts/bench/{Path(module.__file__).name}", *args])
    module.main()
