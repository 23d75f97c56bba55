"""Runs the training-control tests share: early stopping that ends at a known epoch, and
the steps and clipping of the accumulation and clipping tests."""

import pytest

from helpers.cli import run_in_process
from helpers.events import tensorboard_points
from helpers.overrides import TINY

# 32 steps per epoch, a validation split; early stopping on its loss ends it at epoch 6 of 8
# (its loss improves by less than 0.01 after epoch 4).
STOPS = [
    *TINY,
    "dataset.train_size=1024",
    "dataset.val_size=128",
    "trainer.epochs=8",
    "trainer.early_stopping.monitor=val/loss",
    "trainer.early_stopping.patience=2",
    "trainer.early_stopping.min_delta=0.01",
]
STOPPED_AT, BEST_AT = 6, 4

STEPS = [*TINY, "trainer.epochs=2", "trainer.log_every_n_steps=1"]
# Measured total gradient norms of STEPS lie between 0.16 and 0.34: this clips about half.
CLIP = "trainer.grad_clip.norm=0.25"
# Sums in another order (micro-batches, two processes) drift a little over the steps; a wrong
# weighting of the micro-batches or a missed all-reduce changes the loss by far more.
LOSS_TOLERANCE = 1e-5


def stopped_run(folder):
    """The STOPS run, trained in this process into folder/run."""
    assert run_in_process(*STOPS, f"hydra.run.dir={folder / 'run'}", cwd=folder) == 0
    return folder / "run"


def step_curve(run_dir, tag="train_step/loss"):
    return tensorboard_points(run_dir)[tag]


def assert_close_curves(a, b, tolerance=LOSS_TOLERANCE):
    assert [step for step, _ in a] == [step for step, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert y == pytest.approx(x, abs=tolerance)
