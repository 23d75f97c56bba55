import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from helpers.cli import run_cli
from helpers.compare import assert_same_state
from helpers.overrides import TINY


@pytest.mark.slow  # three runs of the entrypoint
def test_a_muon_run_resumed_from_its_checkpoint_ends_bitwise_like_one_run(tmp_path):
    """Through the entrypoint: one epoch, resumed for a second, equals two epochs straight."""
    muon = [*TINY, "optimizer=muon", "optimizer.weight_decay=0.01", "optimizer.rest=sgd"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for run_dir, epochs in ((straight, 2), (resumed, 1)):
        proc = run_cli(*muon, f"trainer.epochs={epochs}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli(f"resume={resumed}", "trainer.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref, got = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (straight, resumed))
    assert set(ref["optimizer"]) == {"muon", "rest"} and ref["optimizer"]["muon"]["state"]
    for part in ("model", "optimizer", "scheduler", "progress"):
        assert_same_state(ref[part], got[part])
