"""A run's manifest (manifest.json in its folder): how its latest attempt went (running, ok,
failed with the reason, interrupted), where and with what it ran, and its earlier attempts.

RunManifest writes it; read_manifest reads it for everyone else (continuing sweeps, the
sweep summary, the report). No torch at import: `cifar_exp.report` loads fast.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from cifar_exp.atomic import write_json
from cifar_exp.errors import UserError
from cifar_exp.signals import gate

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in `folder`; None when there is none; {'status': 'unreadable'} when it
    cannot be read or parsed (a torn write, a file edited by hand)."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return manifest if isinstance(manifest, dict) else {"status": "unreadable"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The commit of the cifar-exp source tree that runs, with '+dirty' for local changes."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


class RunManifest:
    """manifest.json: start/end time, status (running, ok, failed, interrupted), host, device,
    versions and commit of the latest attempt; earlier attempts (before a resume) below it."""

    def __init__(self, run_dir: Path, write: bool = True) -> None:
        self.path = run_dir / MANIFEST_FILE
        self.write = write  # False on every rank but 0 under torchrun
        self.data: dict[str, Any] = {}

    def start(self, resumed_from: Path | None = None) -> None:
        import torch  # here, not at the top: the readers above need no torch

        previous = read_manifest(self.path.parent)
        self.data = {
            "status": "running",
            "reason": None,
            "start_time": _now(),
            "end_time": None,
            "argv": sys.argv,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "git_commit": git_commit(),
        }
        if previous is not None:
            earlier = previous.pop("previous_attempts", [])
            self.data["previous_attempts"] = [*earlier, previous]
        self._write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def finish(self, status: str, reason: str | None = None) -> None:
        self.data.update(status=status, reason=reason, end_time=_now())
        try:
            self._write()
        except UserError as err:  # e.g. the disk is full: the run's own error matters more
            log.warning("%s", err)

    def _write(self) -> None:
        if self.write:
            with gate.deferred():  # a signal waits: the manifest says one thing or the other
                write_json(self.path, self.data)
