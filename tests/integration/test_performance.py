"""trainer.precision / channels_last / compile, end to end on the CPU, and what they log."""

import json
import math

import torch

from helpers.cli import run_cli, run_in_process
from helpers.events import load_events
from helpers.overrides import TINY

CPU = torch.device("cpu")


def run_and_read(tmp_path, *overrides, fresh_process=False):
    """Run and read back its curves and metrics.json; in a new process when `fresh_process`."""
    run_dir = tmp_path / "run"
    overrides = [*TINY, *overrides, f"hydra.run.dir={run_dir}"]
    if fresh_process:
        proc = run_cli(*overrides, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert run_in_process(*overrides, cwd=tmp_path) == 0
    return load_events(run_dir), json.loads((run_dir / "metrics.json").read_text())


def test_compile_reports_compile_time_apart_from_throughput(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # a cold start
    acc, metrics = run_and_read(
        tmp_path,
        "trainer.compile=true",
        "trainer.epochs=2",
        "dataset.train_size=64",
        "dataset.test_size=32",
        "trainer.eval_batch_size=32",
        fresh_process=True,  # a cold compile: nothing compiled earlier in this process helps
    )
    first, second = metrics["epochs"]
    # Compiling takes seconds; two compiled LeNet5 steps take milliseconds.
    assert first["compile_s"] > 1 and first["compile_s"] > 10 * 64 / second["images_per_s"]
    assert "compile_s" not in second
    assert [e.step for e in acc.Scalars("train/compile_s")] == [1]
    assert math.isfinite(metrics["final"]["test_loss"])
