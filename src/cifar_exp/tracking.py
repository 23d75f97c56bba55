"""What a run records: TensorBoard scalars and HParams, and metrics.json beside them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from cifar_exp.errors import UserError
from cifar_exp.files import replace_atomically

# metrics.json key -> TensorBoard tag for the per-epoch scalars (x axis: epoch).
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    "lr": "lr",
    "images_per_s": "throughput/images_per_s",
    "epoch_s": "time/epoch_s",
    "compile_s": "time/compile_s",
    "peak_mem_mb": "memory/peak_mb",
}
# Per-step scalars (x axis: optimizer step).
STEP_LOSS_TAG = "train_step/loss"
STEP_LR_TAG = "train_step/lr"
STEP_TAGS = {STEP_LOSS_TAG, STEP_LR_TAG}
PARAMS_TAG = "model/params"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, with values TensorBoard's HParams accepts."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def write_json(path: Path, data: Any) -> None:
    """Write so that a reader never sees a half-written file."""
    try:
        replace_atomically(path, (json.dumps(data, indent=2) + "\n").encode())
    except OSError as err:
        raise UserError(
            f"could not write {path}: {err.strerror or err}. Free some disk space or fix the "
            "folder's permissions."
        ) from err


def trim_events(old_files: list[Path], writer: SummaryWriter, epoch: int, step: int) -> None:
    """Keep only the events up to a checkpoint: per-epoch tags up to `epoch`, per-step tags
    up to `step`, no final/HParams summaries; rewrite them into `writer`'s new file and drop
    the old files, so a resumed run's curves have no duplicated or out-of-order points."""
    for path in old_files:
        for record in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(record)
            if not event.HasField("summary"):
                continue
            keep = [v for v in event.summary.value if _kept(v.tag, event.step, epoch, step)]
            if not keep:
                continue
            del event.summary.value[:]
            event.summary.value.extend(keep)
            writer.file_writer.add_event(event, walltime=event.wall_time)
    writer.flush()
    for path in old_files:
        path.unlink()


def _kept(tag: str, at: int, epoch: int, step: int) -> bool:
    if tag == PARAMS_TAG or tag.startswith(("final/", "_hparams_/")):
        return False
    return at <= (step if tag in STEP_TAGS else epoch)


class RunTracker:
    """Writes the run's records; with write=False (every rank but 0 under torchrun) nothing."""

    def __init__(self, run_dir: Path, info: dict[str, Any], write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write
        self.metrics: dict[str, Any] = {**info, "epochs": [], "final": None}
        if not write:
            return
        # A resumed run rewrites these (see continue_from); the new writer adds its own file.
        self.earlier_event_files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_scalar(PARAMS_TAG, info["params"], 0)

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": copy.deepcopy(self.metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = copy.deepcopy(state["metrics"])

    def continue_from(self, epoch: int, step: int) -> None:
        """After loading a checkpoint: cut TensorBoard and metrics.json back to it."""
        self.metrics["epochs"] = [e for e in self.metrics["epochs"] if e["epoch"] <= epoch]
        self.metrics["final"] = None
        if not self.write:
            return
        trim_events(self.earlier_event_files, self.writer, epoch, step)
        write_json(self.run_dir / "metrics.json", self.metrics)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        if not self.write:
            return
        self.writer.add_scalar(STEP_LOSS_TAG, loss, step)
        self.writer.add_scalar(STEP_LR_TAG, lr, step)

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if not self.write:
            return
        for key, value in values.items():
            self.writer.add_scalar(EPOCH_TAGS[key], value, epoch)
        self.writer.flush()
        self.metrics["epochs"].append({"epoch": epoch, **values})
        write_json(self.run_dir / "metrics.json", self.metrics)

    def finish(self, hparams: dict[str, Any], final: dict[str, float]) -> None:
        """Record the run's hyperparameters with its final metrics for the HParams view."""
        if not self.write:
            return
        metric_tags = {f"final/{key}": value for key, value in final.items()}
        for summary in hparams_summary(flatten(hparams), metric_tags):
            self.writer.file_writer.add_summary(summary)
        for tag, value in metric_tags.items():
            self.writer.add_scalar(tag, value, 0)
        self.writer.close()
        self.metrics["final"] = final
        write_json(self.run_dir / "metrics.json", self.metrics)
