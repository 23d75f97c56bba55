"""Comparing two runs in everything the seed determines (checkpoints bitwise, metrics.json
and TensorBoard without the timings), and a folder before and after."""

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.tracking import EPOCH_TAGS, TIMING_TAGS
from helpers.events import tensorboard_points

# The metrics.json (and summary.csv) keys that are measured, not determined by the seed:
# those logged under a timing tag, and the run's wall time (in `final` only).
TIMING_KEYS = frozenset({key for key, tag in EPOCH_TAGS.items() if tag in TIMING_TAGS} | {"wall_s"})


def strip_timing(metrics: dict[str, Any]) -> tuple[list[dict], dict]:
    """metrics.json's epochs and final metrics without the measured keys."""
    epochs = [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in metrics["epochs"]]
    final = {k: v for k, v in (metrics["final"] or {}).items() if k not in TIMING_KEYS}
    return epochs, final


def assert_same_state(a: Any, b: Any) -> None:
    """Equal nested states; tensors bitwise."""
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_state(x, y)
    else:
        assert a == b


def assert_same_run(ref_dir: Path, run_dir: Path) -> None:
    """The same last checkpoint (model, optimizer, scheduler, progress) bitwise, and the same
    metrics.json but for its timings."""
    ref = load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    got = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    for part in ("model", "optimizer", "scheduler", "progress"):
        assert_same_state(ref[part], got[part])
    ref_metrics = json.loads((ref_dir / "metrics.json").read_text())
    got_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert strip_timing(ref_metrics) == strip_timing(got_metrics)


def assert_same_tensorboard(ref_dir: Path, run_dir: Path) -> None:
    """The same scalar tags; in `run_dir` each written once per step, in order, and but for
    the timing tags the same points as in `ref_dir`."""
    ref, got = tensorboard_points(ref_dir), tensorboard_points(run_dir)
    assert ref.keys() == got.keys()
    for tag in ref:
        steps = [step for step, _ in got[tag]]
        assert steps == sorted(set(steps)), f"{tag}: duplicated or out-of-order steps {steps}"
        if tag not in TIMING_TAGS:
            assert got[tag] == ref[tag], tag


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its content hash and modification time."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
