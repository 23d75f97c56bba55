"""Checkpoints: written atomically, loaded safely, complete enough to continue a run exactly.

A checkpoint is one `torch.save` file holding only tensors and plain containers (so
`torch.load(weights_only=True)` reads it and it can never run code): the states of the
model, optimizer, scheduler and anything else the run registers (a grad scaler, the
training progress, the metrics so far), every RNG state, the resolved config as YAML, the
class names, the input shape and the package versions that wrote it.
"""

from __future__ import annotations

import io
import logging
import pickle
import platform
import random
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from cifar_exp.errors import UserError
from cifar_exp.records.atomic import TMP_PREFIX, write_bytes_atomically
from cifar_exp.records.commands import override, run_command

log = logging.getLogger(__name__)

FORMAT = "cifar-exp-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("cifar-exp", "torch", "torchvision", "hydra-core", "omegaconf", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def capture_rng() -> dict[str, Any]:
    """Every RNG a run may draw from, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            log.warning(
                "the checkpoint has CUDA RNG states for %d GPUs, this machine has %d; "
                "CUDA random numbers will differ from the original run",
                len(state["cuda"]),
                torch.cuda.device_count(),
            )


def find_checkpoint(spec: str) -> Path:
    """A checkpoint file, or a run directory (-> its checkpoints/last.pt)."""
    path = Path(spec).expanduser().absolute()
    if path.is_dir():
        for candidate in (path / CHECKPOINT_DIR / LAST, path / LAST):
            if candidate.is_file():
                return candidate
        raise UserError(
            f"{path} holds no checkpoint (looked for {CHECKPOINT_DIR}/{LAST}); give a run "
            "directory that wrote checkpoints or the path of a .pt file"
        )
    if not path.is_file():
        raise UserError(f"no such checkpoint or run directory: {path}")
    return path


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/last.pt -> <run>)."""
    in_run = checkpoint.parent.name == CHECKPOINT_DIR
    return checkpoint.parent.parent if in_run else checkpoint.parent


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely; any problem is one UserError that says what to do."""
    try:
        with open(path, "rb") as f:
            payload = f.read()
    except OSError as err:
        raise UserError(f"cannot read checkpoint {path}: {err.strerror or err}") from err
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # A real object reference is "Unsupported global"; anything else is damaged bytes.
        if "Unsupported global" not in str(err):
            raise _corrupted(path, err) from err
        raise UserError(
            f"{path} holds Python objects other than tensors and plain containers, so it is "
            "not loaded (it could run code); use a checkpoint written by cifar-exp"
        ) from err
    except Exception as err:  # torch reports damage as OSError, KeyError, RuntimeError, ...
        raise _corrupted(path, err) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a cifar-exp checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise UserError(
            f"{path} is a version {state.get('version')} checkpoint; this cifar-exp reads "
            f"version {VERSION}"
        )
    return state


def _corrupted(path: Path, err: Exception) -> UserError:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = f"{type(err).__name__}: {lines[0] if lines else ''}"[:160]
    return UserError(
        f"checkpoint {path} is truncated or corrupted ({detail}); use another one, e.g. "
        f"{BEST} or {LAST} of the same run"
    )


def load_states(state: dict[str, Any], parts: dict[str, Stateful], source: Path) -> None:
    """Load each part's state from the checkpoint; a mismatch is one clear error."""
    for name, part in parts.items():
        if name not in state:
            raise UserError(
                f"checkpoint {source} has no '{name}' state; it was written by a run set up "
                "differently"
            )
        try:
            part.load_state_dict(state[name])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            detail = " ".join(line.strip() for line in str(err).splitlines())
            raise UserError(
                f"checkpoint {source} does not fit this run's {name}: {detail[:400]}"
            ) from err


def resume_hint(run_dir: Path) -> str:
    """How to go on once a failed write in `run_dir` is fixed, for its message: resume when
    the run has a checkpoint to continue from, else start it again."""
    if (run_dir / CHECKPOINT_DIR / LAST).is_file():
        return f", then continue with: {run_command([override('resume', run_dir)])}"
    return ", then start the run again."


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def checkpoint_bytes(params: int) -> int:
    """A generous estimate of a checkpoint's size: model, gradients and optimizer moments."""
    return 4 * params * 4 + 2**20


def check_space(folder: Path, needed: int) -> None:
    """Refuse to start when the disk under `folder` cannot hold two copies of a checkpoint
    of `needed` bytes (the new one is written beside the old before replacing it)."""
    free = free_bytes(folder)
    if free < 2 * needed:
        raise UserError(
            f"only {free / 2**20:.1f} MiB free in {folder}, a checkpoint needs about "
            f"{needed / 2**20:.1f} MiB (twice that while it is replaced); free some space "
            "or pick another output folder with hydra.run.dir=..."
        )


class Checkpointer:
    """Writes `last.pt`, and `best.pt` when the selection metric improves, for one run."""

    def __init__(
        self, folder: Path, parts: dict[str, Stateful], meta: dict[str, Any], write: bool = True
    ) -> None:
        self.folder = folder
        self.parts = parts
        self.meta = meta
        self.write = write  # False on every rank but 0 under torchrun: rank 0 saves for all
        self.saved: dict[str, str] = {}
        if not write:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create {folder}: {err.strerror or err}") from err
        for stale in folder.glob(f"{TMP_PREFIX}*"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write

    @property
    def last(self) -> Path:
        return self.folder / LAST

    def check_space(self, needed: int) -> None:
        """Stop before training when the disk cannot hold two copies of a checkpoint."""
        if self.write:
            check_space(self.folder, needed)

    def state(self) -> dict[str, Any]:
        state = {"format": FORMAT, "version": VERSION, **self.meta}
        state.update({name: part.state_dict() for name, part in self.parts.items()})
        state["rng"] = capture_rng()
        state["versions"] = package_versions()
        return state

    def save(self, where: str, *, last: bool = True, best: bool = False) -> None:
        """Write the run's current state; `where` (e.g. 'epoch 3, step 120') goes into messages."""
        if not (last or best) or not self.write:
            return
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        payload = buffer.getvalue()
        # best.pt first: last.pt records the best accuracy so far, so a process killed between
        # the two writes must leave the old last.pt, whose resume writes best.pt again.
        for name, wanted in ((BEST, best), (LAST, last)):
            if wanted:
                hint = resume_hint(self.folder.parent)
                write_bytes_atomically(self.folder / name, payload, then=hint)
                self.saved[name] = where

    def describe(self) -> str:
        """Which checkpoint a user can go back to, for error messages."""
        if LAST not in self.saved:
            return "no checkpoint was written yet"
        return f"the last checkpoint {self.last} ({self.saved[LAST]}) is intact"
