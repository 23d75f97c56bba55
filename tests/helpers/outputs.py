"""Reading what runs and sweeps write: metrics.json, manifest.json, summary.csv, job folders."""

import csv
import json
from pathlib import Path
from typing import Any


def final_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json's `final`: what the run reached (None while it has not finished)."""
    return json.loads((run_dir / "metrics.json").read_text())["final"]


def manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders (those with a .hydra/), sorted by name."""
    return sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
