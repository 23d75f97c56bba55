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
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from cifar_exp.errors import UserError
from cifar_exp.records.atomic import write_json
from cifar_exp.runtime.signals import gate

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"

# The cifar_exp package's folder (this module lives in its records/).
PACKAGE = Path(__file__).resolve().parents[1]


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
    here = PACKAGE

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


def typed_command() -> str:
    """This process's command line, shell-quoted, as it can be typed again.

    sys.argv[0] names the file that runs (.../cifar_exp/run.py for `python -m cifar_exp.run`),
    so the command is what the interpreter was given (sys.orig_argv) when sys.argv came from
    it. A launcher's worker process (joblib's) or a program that set sys.argv before calling
    main() has only sys.argv to go by, a module's file in it named as `python -m <module>`."""
    typed, args = sys.orig_argv, sys.argv[1:]
    program = typed[-len(args) - 1] if len(typed) > len(args) else None
    main_module = getattr(sys.modules["__main__"].__spec__, "name", None)
    if typed[len(typed) - len(args) :] == args and program in (sys.argv[0], main_module):
        return shlex.join(typed)
    return shlex.join([*as_typed(sys.argv[0]), *args])


def as_typed(program: str) -> list[str]:
    """`python -m cifar_exp.<module>` for a module file of this package, else `program`."""
    try:
        inside = Path(program).resolve().relative_to(PACKAGE)
    except ValueError:
        return [program]
    return ["python", "-m", ".".join(["cifar_exp", *inside.with_suffix("").parts])]


class RunManifest:
    """manifest.json: start/end time, status (running, ok, failed, interrupted), the command,
    host, device, versions (the CUDA torch was built with among them) and commit of the latest
    attempt; earlier attempts (before a resume) below it."""

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
            "command": typed_command(),
            "resumed_from": str(resumed_from) if resumed_from else None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": None,  # the device used, set once chosen
            # The CUDA version torch was built with (null for a CPU-only build), whatever the
            # device: a CUDA build runs on machines without a GPU too.
            "torch_cuda_build": torch.version.cuda,
            "python": platform.python_version(),
            "torch": torch.__version__,
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
