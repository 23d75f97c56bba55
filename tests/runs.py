"""Comparing two runs: checkpoints bitwise, metrics.json and TensorBoard without timings."""

import hashlib
import json
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from cifar_exp.checkpoint import load_checkpoint
from cifar_exp.tracking import TIMING_TAGS

# Measured, not determined by the seed: left out when runs are compared.
TIMING = ("epoch_s", "train_s", "init_s", "images_per_s", "wall_s", "compile_s", "peak_mem_mb")


def strip_timing(metrics):
    epochs = [{k: v for k, v in e.items() if k not in TIMING} for e in metrics["epochs"]]
    final = {k: v for k, v in (metrics["final"] or {}).items() if k not in TIMING}
    return epochs, final


def assert_same_state(a, b):
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


def assert_same_run(ref_dir, run_dir):
    ref = load_checkpoint(ref_dir / "checkpoints" / "last.pt")
    got = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    for part in ("model", "optimizer", "scheduler", "progress"):
        assert_same_state(ref[part], got[part])
    ref_metrics = json.loads((ref_dir / "metrics.json").read_text())
    got_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert strip_timing(ref_metrics) == strip_timing(got_metrics)


def tensorboard_points(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def hparams_session(run_dir):
    """The run's HParams session as TensorBoard reads it: its hyperparameters (name -> plain
    value) and the name of its status (None while it has not ended)."""
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content  # TensorBoard infers it from all sessions
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {
        key: getattr(value, value.WhichOneof("kind"))
        for key, value in start.session_start_info.hparams.items()
    }
    end = content.get("_hparams_/session_end_info")
    if end is None:
        return hparams, None
    status = plugin_data_pb2.HParamsPluginData.FromString(end).session_end_info.status
    return hparams, api_pb2.Status.Name(status)


def assert_same_tensorboard(ref_dir, run_dir):
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
