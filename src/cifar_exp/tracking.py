"""What a run records: TensorBoard scalars and HParams, and metrics.json beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

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
}
# Per-step scalars (x axis: optimizer step).
STEP_LOSS_TAG = "train_step/loss"
STEP_LR_TAG = "train_step/lr"


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class RunTracker:
    def __init__(self, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.metrics: dict[str, Any] = {**info, "epochs": [], "final": None}
        self.writer.add_scalar("model/params", info["params"], 0)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar(STEP_LOSS_TAG, loss, step)
        self.writer.add_scalar(STEP_LR_TAG, lr, step)

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(EPOCH_TAGS[key], value, epoch)
        self.writer.flush()
        self.metrics["epochs"].append({"epoch": epoch, **values})
        write_json(self.run_dir / "metrics.json", self.metrics)

    def finish(self, hparams: dict[str, Any], final: dict[str, float]) -> None:
        """Record the run's hyperparameters with its final metrics for the HParams view."""
        metric_tags = {f"final/{key}": value for key, value in final.items()}
        for summary in hparams_summary(flatten(hparams), metric_tags):
            self.writer.file_writer.add_summary(summary)
        for tag, value in metric_tags.items():
            self.writer.add_scalar(tag, value, 0)
        self.writer.close()
        self.metrics["final"] = final
        write_json(self.run_dir / "metrics.json", self.metrics)
