"""The imagefolder source: layout checks, any image format and size, bad files, the cache."""

import json
import os

import pytest

from helpers.cli import run_cli
from helpers.paths import CIFAR10_JPEG


@pytest.mark.skipif(not CIFAR10_JPEG.is_dir(), reason=f"real CIFAR-10 JPEGs not at {CIFAR10_JPEG}")
def test_real_cifar10_jpegs_train_above_chance(tmp_path):
    """500 images per class (5,000 train, 5,000 test), two epochs of the seed's LeNet5."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        "device=cpu",
        "trainer.num_threads=1",
        "trainer.epochs=2",
        "trainer.progress_bar=false",
        "dataset=imagefolder",
        f"dataset.root={CIFAR10_JPEG}",
        "dataset.max_per_class=500",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["test_acc"] > 0.25  # chance is 0.10
    assert "5000 train / 0 val / 5000 test images, 10 classes" in (run_dir / "run.log").read_text()
    assert os.listdir(tmp_path / "cache")
