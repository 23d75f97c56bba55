"""What a run records: metrics.json, and the same points in every tracker chosen with
`tracker=[...]` (TensorBoard by default; CSV, MLflow, Weights & Biases), one writer each,
fed by one record (record.py)."""

from cifar_exp.tracking.record import DEFAULT_TRACKERS, RunTracker
from cifar_exp.tracking.tags import (
    EPOCH_TAGS,
    FINAL_ONLY,
    LAYOUT,
    LAYOUT_TAG,
    STEP_GRAD_NORM_TAG,
    STEP_LOSS_TAG,
    STEP_LR_TAG,
    STEP_TAGS,
    TEXT_TAGS,
    TIMING_TAGS,
    HParamValue,
    event_files,
    flatten,
    select_hparams,
)

__all__ = [
    "DEFAULT_TRACKERS",
    "EPOCH_TAGS",
    "FINAL_ONLY",
    "LAYOUT",
    "LAYOUT_TAG",
    "STEP_GRAD_NORM_TAG",
    "STEP_LOSS_TAG",
    "STEP_LR_TAG",
    "STEP_TAGS",
    "TEXT_TAGS",
    "TIMING_TAGS",
    "HParamValue",
    "RunTracker",
    "event_files",
    "flatten",
    "select_hparams",
]
