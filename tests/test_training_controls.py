"""Training controls users expect from Lightning and timm: early stopping (stopping.py),
gradient clipping, gradient accumulation and a deterministic mode, tried as a user runs them:
real runs, TensorBoard read back, a SIGKILL and a resume, torchrun with two Gloo processes."""

import json
import math
import signal
import time

import pytest

from cifar_exp.checkpoint import load_checkpoint
from cifar_exp.errors import ConfigError
from cifar_exp.stopping import EarlyStopping, RuleStates, Stop, first_stop
from cifar_exp.summary import write_summary
from helpers.cli import run_cli, run_in_process, start_run
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.events import hparams_session, tensorboard_points
from helpers.outputs import final_metrics, manifest, read_csv
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


def output(proc):
    return proc.stdout + proc.stderr


def epochs_logged(run_dir):
    try:
        return len(json.loads((run_dir / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError):
        return 0


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stopped")
    assert run_in_process(*STOPS, f"hydra.run.dir={folder / 'run'}", cwd=folder) == 0
    return folder / "run"


# -- early stopping -------------------------------------------------------------------------


def test_the_rule_counts_evaluations_without_improvement_by_more_than_min_delta():
    rule = EarlyStopping("val_loss", "min", patience=2, min_delta=0.1)
    seen = [rule.after_evaluation(e, {"val_loss": v}) for e, v in enumerate([1.0, 0.95, 0.5], 1)]
    assert seen == [None, None, None] and (rule.best, rule.best_epoch, rule.wait) == (0.5, 3, 0)
    assert rule.after_evaluation(4, {"train_loss": 9.0}) is None  # not evaluated: not counted
    assert rule.wait == 0
    assert rule.after_evaluation(5, {"val_loss": 0.45}) is None  # better, but by < min_delta
    stop = rule.after_evaluation(6, {"val_loss": 0.7})
    assert stop == Stop(
        "ok",
        6,
        stop.reason,
        "stopped_early_at_epoch",
        {"early_stopping_best_epoch": 3, "early_stopping_best": 0.5},
    )
    assert "val_loss did not improve on 0.5000 (epoch 3)" in stop.reason

    again = EarlyStopping("val_loss", "min", patience=2, min_delta=0.1)
    RuleStates([again]).load_state_dict(RuleStates([rule]).state_dict())
    assert again.state_dict() == rule.state_dict()
    maximum = EarlyStopping("val_acc", "max", patience=1, min_delta=0.0)
    assert first_stop([maximum], 1, {"val_acc": 0.5}) is None
    assert first_stop([maximum], 2, {"val_acc": 0.5}).epoch == 2  # equal is no improvement


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.early_stopping.monitor=val/f1", "trainer.early_stopping.monitor must be one of"),
        ("trainer.early_stopping.mode=up", "trainer.early_stopping.mode must be one of"),
        ("trainer.early_stopping.patience=0", "trainer.early_stopping.patience must be >= 1"),
        ("trainer.early_stopping.min_delta=-1", "trainer.early_stopping.min_delta must be >= 0"),
    ],
)
def test_a_bad_early_stopping_value_is_one_line_naming_the_key(compose, override, message):
    from cifar_exp.config import validate

    with pytest.raises(ConfigError) as err:
        validate(compose([override]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_early_stopped_run_ends_ok_and_records_where_and_why(stopped, tmp_path):
    final = final_metrics(stopped)
    assert final["epochs"] == STOPPED_AT
    assert final["stopped_early_at_epoch"] == STOPPED_AT
    assert final["early_stopping_best_epoch"] == BEST_AT
    info = manifest(stopped)
    assert info["status"] == "ok" and "early stopping: val_loss did not improve" in info["reason"]
    assert (info["stopped_early_at_epoch"], info["early_stopping_best_epoch"]) == (6, 4)
    last = load_checkpoint(stopped / "checkpoints" / "last.pt")
    assert last["progress"]["epoch"] == STOPPED_AT and last["progress"]["stopped"]["epoch"] == 6
    points = tensorboard_points(stopped)
    assert [step for step, _ in points["val/loss"]] == list(range(1, STOPPED_AT + 1))
    assert points["test/acc"][-1][0] == STOPPED_AT  # the final test score, where it stopped
    assert hparams_session(stopped)[1] == "STATUS_SUCCESS"

    refused = run_cli(f"resume={stopped}", "trainer.epochs=10", cwd=tmp_path)
    assert refused.returncode == 1
    assert f"the run in {stopped} is finished: it stopped after epoch 6" in output(refused)


def test_the_sweep_summary_shows_where_a_job_stopped_early(stopped, tmp_path):
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(stopped, sweep / "0_stopped")
    table = write_summary(sweep)
    assert "stopped early at epoch" in table
    (row,) = read_csv(sweep / "summary.csv")
    assert (row["stopped_early_at_epoch"], row["epochs"], row["status"]) == ("6", "6", "ok")


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


def test_without_a_validation_split_it_warns_that_it_selects_on_the_test_set(tmp_path, capfd):
    args = [*TINY, "trainer.epochs=2", "trainer.early_stopping.monitor=val/acc"]
    assert run_in_process(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path) == 0
    out, err = capfd.readouterr()
    assert "early stopping watches test/acc and selects on the test set" in out + err
    assert not math.isnan(final_metrics(tmp_path / "run")["test_acc"])
