"""A run's folder as the tool finds it: whether a run worth keeping lives there, how its
latest attempt ended, whether it is writable or in use, and the log files Hydra opened in it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cifar_exp.errors import UserError
from cifar_exp.records.atomic import DamagedFile, read_json
from cifar_exp.records.checkpoint import BEST, CHECKPOINT_DIR, LAST
from cifar_exp.records.commands import override, run_command
from cifar_exp.records.lock import FolderInUse, holder_of
from cifar_exp.records.manifest import MANIFEST_FILE, read_manifest


def previous_run(folder: Path) -> str | None:
    """What in `folder` shows that a run worth keeping lives there, if anything.

    A run that failed before its first epoch (e.g. on a config value), or was stopped (by a
    signal, or killed outright) before its first checkpoint, left nothing worth keeping: no
    checkpoint to continue from, whatever epochs its metrics.json lists. A new run may start
    there, and its manifest keeps the earlier attempt.
    """
    status = attempt_status(folder)
    checkpoint = _holds(folder / CHECKPOINT_DIR)
    if status in ("failed", "interrupted", "running") and not checkpoint:
        return None
    if status not in (None, "failed"):
        return f"{MANIFEST_FILE} (status: {status})"
    saved = [name for name in (CHECKPOINT_DIR, "metrics.json") if _holds(folder / name)]
    return saved[0] if saved else None


def _holds(path: Path) -> bool:
    """A file, or a checkpoints folder with a checkpoint in it."""
    if path.name == CHECKPOINT_DIR:
        return any((path / name).is_file() for name in (LAST, BEST))
    return path.exists()


def attempt_status(job_dir: Path) -> str | None:
    """How the latest attempt at the run in `job_dir` ended (its manifest's status; 'running'
    when it was killed), or None when no run started there."""
    manifest = read_manifest(job_dir)
    return None if manifest is None else str(manifest.get("status", "unreadable"))


def recorded_final(run_dir: Path) -> dict[str, Any] | None:
    """The final metrics the run in `run_dir` recorded (metrics.json's `final`); None when it
    recorded none, or its metrics.json is missing or damaged (a resume writes it again)."""
    try:
        metrics = read_json(run_dir / "metrics.json")
    except (FileNotFoundError, DamagedFile):
        return None
    final = metrics.get("final") if isinstance(metrics, dict) else None
    return final if isinstance(final, dict) and final else None


def check_writable(folder: Path, key: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"cannot write to the output directory {folder} ({err.strerror or err}); fix its "
            f"permissions or free space, or choose another folder with {key}=..."
        ) from err


def refuse_if_in_use(folder: Path, then: str) -> None:
    holder = holder_of(folder)
    if holder is not None:
        raise FolderInUse(folder, holder, then)


def refuse_if_holds_a_run(folder: Path) -> None:
    if found := previous_run(folder):
        resume = run_command([override("resume", folder)])
        raise UserError(
            f"{folder} already holds a run ({found}); a run directory is never overwritten. "
            f"Choose another hydra.run.dir, or continue that run with: {resume}"
        )


def close_log_files(run_dir: Path) -> None:
    """Detach the log files Hydra opened in `run_dir` from the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (
            isinstance(handler, logging.FileHandler)
            and Path(handler.baseFilename).parent == run_dir
        ):
            root.removeHandler(handler)
            handler.close()
