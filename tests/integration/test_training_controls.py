"""Training controls users expect from Lightning and timm: early stopping (stop_rules.py),
gradient clipping, gradient accumulation and a deterministic mode, tried as a user runs them:
real runs, TensorBoard read back, a SIGKILL and a resume, torchrun with two Gloo processes."""

import json
import signal
import time

import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from helpers.cli import output, run_cli, run_in_process, start_run, torchrun
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.outputs import final_metrics, manifest
from helpers.overrides import TINY
from helpers.training_controls import (
    BEST_AT,
    CLIP,
    STOPPED_AT,
    STOPS,
    assert_close_curves,
    step_curve,
    stopped_run,
)


def epochs_logged(run_dir):
    try:
        return len(json.loads((run_dir / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return stopped_run(tmp_path_factory.mktemp("stopped"))


def test_a_sigkill_mid_epoch_resumes_the_patience_count_exactly(stopped, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(*STOPS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    deadline = time.monotonic() + 180
    while epochs_logged(run_dir) < BEST_AT + 1:  # one evaluation without improvement so far
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] < STOPPED_AT and state["stop_rules"]["0:EarlyStopping"]

    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(stopped, run_dir)
    assert_same_tensorboard(stopped, run_dir)
    assert final_metrics(run_dir)["stopped_early_at_epoch"] == STOPPED_AT


@pytest.mark.parametrize(
    "option",
    [CLIP, "trainer.accumulate_grad_batches=4", "trainer.deterministic=true"],
    ids=["grad_clip", "accumulate", "deterministic"],
)
def test_a_sigkill_mid_epoch_with_the_option_resumes_bitwise(option, tmp_path):
    long = [*TINY, "dataset.train_size=1024", "trainer.epochs=3", option]
    reference = tmp_path / "reference"
    if option.startswith("trainer.deterministic"):  # torch's global flags: in a process of its own
        done = run_cli(*long, f"hydra.run.dir={reference}", cwd=tmp_path)
        assert done.returncode == 0, output(done)[-3000:]
    else:
        assert run_in_process(*long, f"hydra.run.dir={reference}", cwd=tmp_path) == 0
    run_dir = tmp_path / "run"
    proc = start_run(*long, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while not last.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.005)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(last)["progress"]["epoch"] < 3
    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(reference, run_dir)
    assert_same_tensorboard(reference, run_dir)


# 250 training images in global batches of 32 (as in test_distributed.py): under two processes
# and 4 micro-batches, 4 images per micro-batch, and the last batch's shares of 13 split
# 4 + 3 + 3 + 3. Early stopping ends it after epoch 5 of 6 (test accuracy rises by < 0.1).
AGREES = [
    *TINY,
    "dataset.train_size=250",
    "dataset.test_size=125",
    "trainer.epochs=6",
    "trainer.eval_batch_size=50",
    "trainer.log_every_n_steps=1",
    CLIP,
    "trainer.early_stopping.monitor=val/acc",
    "trainer.early_stopping.patience=1",
    "trainer.early_stopping.min_delta=0.1",
]


def test_two_processes_accumulating_and_clipping_agree_with_one_and_stop_at_its_epoch(tmp_path):
    single = tmp_path / "single"
    assert run_in_process(*AGREES, f"hydra.run.dir={single}", cwd=tmp_path) == 0
    ddp = tmp_path / "ddp"
    accumulate = "trainer.accumulate_grad_batches=4"
    proc = torchrun(*AGREES, accumulate, f"hydra.run.dir={ddp}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 process(es) x 16 in 4 micro-batches of 4" in (ddp / "run.log").read_text()
    one, two = final_metrics(single), final_metrics(ddp)
    assert one["stopped_early_at_epoch"] == two["stopped_early_at_epoch"] == 5
    assert manifest(ddp)["stopped_early_at_epoch"] == 5
    assert_close_curves(step_curve(single), step_curve(ddp))
    assert_close_curves(
        step_curve(single, "train_step/grad_norm"), step_curve(ddp, "train_step/grad_norm")
    )
    shares = [
        [e["grad_clipped_share"] for e in json.loads((run / "metrics.json").read_text())["epochs"]]
        for run in (single, ddp)
    ]
    assert shares[0] == shares[1]
