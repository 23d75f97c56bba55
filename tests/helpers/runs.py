"""Runs several tests start from, trained once in this process, and copies to change."""

import shutil
from pathlib import Path

from helpers.cli import run_in_process


def trained(folder: Path, *overrides: str) -> Path:
    """A run of `overrides` trained in this process into folder/run."""
    folder.mkdir(parents=True, exist_ok=True)
    assert run_in_process(*overrides, f"hydra.run.dir={folder / 'run'}", cwd=folder) == 0
    return folder / "run"


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of `run_dir` in tmp_path/run, for a test that changes it."""
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"
