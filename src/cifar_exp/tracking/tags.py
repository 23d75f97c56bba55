"""What every tracker records under which name: the metrics.json keys of the per-epoch
values and their tags (TensorBoard's, MLflow's and metrics.csv's names alike), the per-step
tags, the Text entries, and the curated hyperparameters (TensorBoard's HParams set)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# metrics.json key -> TensorBoard tag for the per-epoch scalars (x axis: epoch). TensorBoard
# orders its groups by name: `test/` and `train/` come first, so the page opens on the curves.
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    # Scored once at the end (calibration.py), at the last epoch: HParams' columns.
    "val_ece": "val/ece",
    "val_brier": "val/brier",
    "val_top5_acc": "val/top5_acc",
    "test_ece": "test/ece",
    "test_brier": "test/brier",
    "test_top5_acc": "test/top5_acc",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "epoch_s": "train/epoch_s",  # training and the epoch's evaluation
    "train_s": "train/train_s",  # training alone
    "init_s": "train/init_s",  # a data-dependent initialization before it (epoch 1)
    "compile_s": "train/compile_s",
    "peak_mem_mb": "train/peak_mem_mb",
    "grad_clipped_share": "train/grad_clipped_share",  # of the epoch's steps (grad_clip)
}
# Final metrics' suffixes scored once, at the end (calibration.py): logged at the last epoch.
FINAL_ONLY = ("_ece", "_brier", "_top5_acc")
# Measured, not determined by the seed: they differ between two runs of the same config.
TIMING_TAGS = {
    EPOCH_TAGS[key]
    for key in ("images_per_s", "epoch_s", "train_s", "init_s", "compile_s", "peak_mem_mb")
}
# Per-step scalars (x axis: optimizer step).
STEP_LOSS_TAG = "train_step/loss"
STEP_LR_TAG = "train_step/lr"
STEP_GRAD_NORM_TAG = "train_step/grad_norm"  # the total gradient norm, before clipping
STEP_TAGS = {STEP_LOSS_TAG, STEP_LR_TAG, STEP_GRAD_NORM_TAG}
# The Text tab: what produced the run.
TEXT_TAGS = {
    "config": "run/config",
    "overrides": "run/overrides",
    "command": "run/command",
    "git_commit": "run/git_commit",
}

HParamValue = bool | int | float | str


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def select_hparams(config: dict[str, Any], keys: list[str]) -> dict[str, HParamValue]:
    """The run's HParams entries: `keys` in order, with typed values; unset (None) ones left
    out so that numeric columns hold only numbers."""
    flat = flatten(config)
    keys = list(dict.fromkeys(k for k in keys if flat.get(k) is not None))
    return {k: flat[k] if isinstance(flat[k], HParamValue) else str(flat[k]) for k in keys}


# Where SummaryWriter.add_custom_scalars writes TensorBoard's custom scalars layout.
LAYOUT_TAG = "custom_scalars__config__"
# Training and evaluation side by side in one chart each (the Custom Scalars tab).
LAYOUT = {
    "train vs evaluation": {
        "loss": ["Multiline", [r"^(train|val|test)/loss$"]],
        "accuracy": ["Multiline", [r"^(train|val|test)/acc$"]],
    }
}


def event_files(run_dir: Path) -> list[Path]:
    """The TensorBoard event files of a run folder, oldest first."""
    return sorted(run_dir.glob("events.out.tfevents.*"))
