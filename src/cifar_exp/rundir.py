"""The run directory: checked before Hydra writes into it, and described by a manifest.

`RunDirGuard` (a Hydra callback, see conf/config.yaml) stops a run before anything is
written when its directory is not writable or already holds a run (a finished run is never
overwritten; continue one with `resume=`). `RunManifest` records in every run directory
when it started and ended, how it ended, and where it ran.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_exp import distributed
from cifar_exp.checkpoint import CHECKPOINT_DIR, find_checkpoint
from cifar_exp.config import is_plumbing
from cifar_exp.errors import UserError
from cifar_exp.summary import MANIFEST_FILE as MANIFEST
from cifar_exp.sweep import MAX_DIRNAME, override_key
from cifar_exp.tracking import write_json

log = logging.getLogger("cifar_exp")

# What Hydra's override grammar does not take unquoted in a value (e.g. "=", ",", brackets).
_UNSAFE = re.compile(r"[^\w.+@%-]")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/last.pt -> <run>)."""
    in_run = checkpoint.parent.name == CHECKPOINT_DIR
    return checkpoint.parent.parent if in_run else checkpoint.parent


def resumed_run_dir(resume: str | None, default: str) -> str:
    """Resolver for hydra.run.dir: a resumed run continues in its own directory."""
    if not resume:
        return default
    try:
        return str(run_dir_of(find_checkpoint(resume)))
    except UserError:
        return default  # RunDirGuard reports the bad path before anything is written


def run_name(name: str | None, overrides: ListConfig | list[str]) -> str:
    """The readable part of a single run's folder, and so of its name in TensorBoard:
    `name=...` as given, else the overrides typed that change what is trained, joined like
    model-resnet+optimizer.lr-0.003, else "defaults".

    Only characters Hydra accepts unquoted in a value are kept (others become "-"), so the
    folder can be typed as is in resume=... and ckpt=..."""
    if not name:
        shown = [o.replace("=", "-", 1) for o in overrides if not is_plumbing(override_key(o))]
        name = "+".join(shown) or "defaults"
    return _UNSAFE.sub("-", name)[:MAX_DIRNAME]


def register_resolvers() -> None:
    """The resolvers conf/config.yaml's hydra.run.dir and hydra.sweep.dir use."""
    # Under torchrun these are rank 0's, so all ranks share one directory. Cached like Hydra's
    # ${now:}: the cache travels with the config to launcher workers, so every job of a sweep
    # resolves the sweep folder to the starting process's.
    OmegaConf.register_new_resolver(
        "launch_time", distributed.launch_time, replace=True, use_cache=True
    )
    OmegaConf.register_new_resolver("pid", distributed.launch_pid, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("resumed_run_dir", resumed_run_dir, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    # A resumed run keeps the .hydra/ of its first start; its manifest records each resume.
    OmegaConf.register_new_resolver(
        "hydra_subdir", lambda resume: None if resume else ".hydra", replace=True
    )


def previous_run(folder: Path) -> str | None:
    """What in `folder` shows that a run worth keeping lives there, if anything.

    A run that failed before its first epoch (e.g. on a config value) left nothing worth
    keeping; a new run may start there, and its manifest keeps the failed attempt.
    """
    if (folder / MANIFEST).exists():
        try:
            status = json.loads((folder / MANIFEST).read_text())["status"]
        except (OSError, ValueError, KeyError):
            status = "unreadable"
        if status != "failed":
            return f"{MANIFEST} (status: {status})"
    for name in (CHECKPOINT_DIR, "metrics.json"):
        if (folder / name).exists():
            return name
    return None


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


def check_run_dir(folder: Path, resume: str | None) -> None:
    """Raise UserError when a run must not start in `folder`."""
    if resume:
        target = run_dir_of(find_checkpoint(resume)).resolve()
        if folder.resolve() != target:
            raise UserError(
                f"resume continues in the run's own directory {target}; drop hydra.run.dir={folder}"
            )
    elif folder.exists() and (found := previous_run(folder)):
        raise UserError(
            f"{folder} already holds a run ({found}); a run directory is never overwritten. "
            f"Choose another hydra.run.dir, or continue that run with resume={folder}"
        )
    check_writable(folder, "hydra.run.dir")


def check_sweep_dir(folder: Path, resume: str | None) -> None:
    if resume:
        raise UserError(
            "resume= continues one run and cannot be part of a sweep (-m); resume each job "
            "on its own: python -m cifar_exp.run resume=<job dir>"
        )
    if folder.is_dir():
        for job in sorted(p for p in folder.iterdir() if p.is_dir()):
            if found := previous_run(job):
                raise UserError(
                    f"{folder} already holds the runs of a sweep ({job.name}/{found}); they are "
                    "never overwritten. Choose another hydra.sweep.dir"
                )
    check_writable(folder, "hydra.sweep.dir")


class RunDirGuard(Callback):
    """Checks the run (or sweep) directory before Hydra creates or writes anything in it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(check_run_dir, config.hydra.run.dir, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(check_sweep_dir, config.hydra.sweep.dir, config)

    @staticmethod
    def _check(check: Any, folder: str, config: DictConfig) -> None:
        if not distributed.place().is_main:
            return  # rank 0 checks the folder all ranks share, and may have filled it already
        try:
            check(Path(folder).absolute(), config.get("resume"))
        except UserError as err:
            log.error("%s", err)
            sys.exit(1)


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
        self.path = run_dir / MANIFEST
        self.write = write  # False on every rank but 0 under torchrun
        self.data: dict[str, Any] = {}

    def start(self, resumed_from: Path | None = None) -> None:
        previous: dict[str, Any] | None = None
        if self.path.exists():
            try:
                previous = json.loads(self.path.read_text())
            except (OSError, ValueError):
                previous = {"status": "unreadable manifest"}
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
            write_json(self.path, self.data)
