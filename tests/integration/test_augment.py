"""Batch augmentation and normalization, the seeded val holdout, and their use in a run."""

import signal
import subprocess
import sys
import time

import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from helpers.cli import run_cli
from helpers.compare import assert_same_run
from helpers.overrides import TINY


@pytest.mark.slow
def test_airbench_augmentation_resumes_mid_epoch_bitwise(tmp_path):
    """Interrupted in epoch 2 (the flipped half is the other one) and resumed: the same
    weights, optimizer state and metrics as the uninterrupted run."""
    overrides = [*TINY, "dataset.train_size=1024", "trainer.epochs=2", "augment=airbench"]
    reference = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'ref'}", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while not (run_dir / "checkpoints" / "last.pt").exists():  # epoch 1 is done
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    progress = load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]
    assert progress["epoch"] == 1 and progress["batch"] > 0  # stopped inside epoch 2
    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(tmp_path / "ref", run_dir)
