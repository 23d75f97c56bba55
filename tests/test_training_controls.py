"""Training controls users expect from Lightning and timm: early stopping (stop_rules.py),
gradient clipping, gradient accumulation and a deterministic mode, tried as a user runs them:
real runs, TensorBoard read back, a SIGKILL and a resume, torchrun with two Gloo processes."""

import json
import math

import pytest

from cifar_exp.components.stop_rules import EarlyStopping, RuleStates, Stop, first_stop
from cifar_exp.errors import ConfigError
from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.sweeps.summary import write_summary
from helpers.cli import output_in_process, run_in_process
from helpers.compare import strip_timing
from helpers.events import hparams_session, tensorboard_points
from helpers.outputs import final_metrics, manifest, read_csv
from helpers.overrides import TINY
from helpers.runs import copy_of
from helpers.training_controls import (
    BEST_AT,
    CLIP,
    STEPS,
    STOPPED_AT,
    assert_close_curves,
    step_curve,
    stopped_run,
)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    return stopped_run(tmp_path_factory.mktemp("stopped"))


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


def test_the_sweep_summary_shows_where_a_job_stopped_early(stopped, tmp_path):
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(stopped, sweep / "0_stopped")
    table = write_summary(sweep)
    assert "stopped early at epoch" in table
    (row,) = read_csv(sweep / "summary.csv")
    assert (row["stopped_early_at_epoch"], row["epochs"], row["status"]) == ("6", "6", "ok")


def test_without_a_validation_split_it_warns_that_it_selects_on_the_test_set(tmp_path, capfd):
    args = [*TINY, "trainer.epochs=2", "trainer.early_stopping.monitor=val/acc"]
    assert run_in_process(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path) == 0
    out, err = capfd.readouterr()
    assert "early stopping watches test/acc and selects on the test set" in out + err
    assert not math.isnan(final_metrics(tmp_path / "run")["test_acc"])


# -- gradient clipping, accumulation, the deterministic mode --------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.grad_clip.norm=0", "trainer.grad_clip.norm must be > 0 or null (off)"),
        ("trainer.grad_clip.value=-1", "trainer.grad_clip.value must be > 0 or null (off)"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be >= 1"),
    ],
)
def test_a_bad_clipping_or_accumulation_value_is_one_line_naming_the_key(
    compose, override, message
):
    from cifar_exp.config import validate

    with pytest.raises(ConfigError) as err:
        validate(compose([override]))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_both_kinds_of_clipping_at_once_are_refused(compose):
    from cifar_exp.config import validate

    with pytest.raises(ConfigError, match="trainer.grad_clip.value must be null when grad_clip"):
        validate(compose(["trainer.grad_clip.norm=1", "trainer.grad_clip.value=1"]))


def test_an_accumulation_that_does_not_divide_the_batch_is_one_line(tmp_path, capfd):
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.accumulate_grad_batches=5", f"hydra.run.dir={run_dir}"]
    assert run_in_process(*args, cwd=tmp_path) == 1
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if "][INFO]" not in line and line]
    assert "Traceback" not in out + err
    (line,) = lines
    assert "trainer.accumulate_grad_batches=5: trainer.batch_size=32" in line
    assert "use a multiple of 5" in line


def test_clipping_returns_the_norm_before_it_and_whether_it_clipped():
    import torch

    from cifar_exp.training.engine import clip_gradients

    net = torch.nn.Linear(3, 2)
    grads = (torch.full((2, 3), 2.0), torch.full((2,), 2.0))
    for p, g in zip(net.parameters(), grads, strict=True):
        p.grad = g.clone()  # total norm sqrt(8 * 4) = 5.657
    norm, clipped = clip_gradients(list(net.parameters()), 1.0, None)
    assert norm.item() == pytest.approx(32**0.5) and clipped.item()
    assert torch.nn.utils.get_total_norm([p.grad for p in net.parameters()]) == pytest.approx(1)
    norm, clipped = clip_gradients(list(net.parameters()), 1.0, None)
    assert not clipped.item()  # already within it
    norm, clipped = clip_gradients(list(net.parameters()), None, 0.1)
    assert clipped.item()
    assert max(p.grad.abs().max().item() for p in net.parameters()) == pytest.approx(0.1)
    norm, clipped = clip_gradients(list(net.parameters()), None, None)
    assert clipped is None and norm.item() == pytest.approx(0.1 * 8**0.5)


def test_clipping_logs_the_norm_and_the_share_of_clipped_steps(tmp_path):
    plain, clipped = tmp_path / "plain", tmp_path / "clipped"
    assert run_in_process(*STEPS, f"hydra.run.dir={plain}", cwd=tmp_path) == 0
    assert run_in_process(*STEPS, CLIP, f"hydra.run.dir={clipped}", cwd=tmp_path) == 0
    norms = step_curve(plain, "train_step/grad_norm")
    assert [step for step, _ in norms] == list(range(1, 17))
    assert all(0 < value < 10 for _, value in norms)
    # The first step's gradients are those of the same weights: the same norm before clipping.
    assert step_curve(clipped, "train_step/grad_norm")[0] == norms[0]
    shares = [
        e["grad_clipped_share"]
        for e in json.loads((clipped / "metrics.json").read_text())["epochs"]
    ]
    assert 0 < shares[0] < 1 and all(0 < share <= 1 for share in shares)
    assert all(round(share * 8, 6).is_integer() for share in shares)  # of 8 steps per epoch
    assert "grad_clipped_share" not in json.loads((plain / "metrics.json").read_text())["epochs"][0]
    assert step_curve(clipped)[-1][1] != step_curve(plain)[-1][1]  # clipping changed training


def test_four_micro_batches_follow_the_loss_trajectory_of_one_batch(tmp_path):
    one, four = tmp_path / "one", tmp_path / "four"
    assert run_in_process(*STEPS, f"hydra.run.dir={one}", cwd=tmp_path) == 0
    accumulate = "trainer.accumulate_grad_batches=4"
    assert run_in_process(*STEPS, accumulate, f"hydra.run.dir={four}", cwd=tmp_path) == 0
    assert_close_curves(step_curve(one), step_curve(four))  # 16 optimizer steps, not 64
    assert_close_curves(
        step_curve(one, "train_step/grad_norm"), step_curve(four, "train_step/grad_norm")
    )
    assert "in 4 micro-batches of 8" in (four / "run.log").read_text()


def test_micro_batches_split_a_short_last_batch_and_weigh_each_by_its_size():
    import torch

    from cifar_exp.training.engine import micro_batches

    images, labels = torch.rand(13, 3, 4, 4), torch.arange(13)
    parts = micro_batches(images, labels, 4)
    assert [len(y) for _, y in parts] == [4, 3, 3, 3]
    assert torch.equal(torch.cat([y for _, y in parts]), labels)
    assert [len(y) for _, y in micro_batches(images[:2], labels[:2], 4)] == [1, 1]


def test_the_deterministic_mode_sets_torchs_flags_and_changes_nothing_on_the_cpu(tmp_path):
    import torch

    from cifar_exp.runtime.device import set_deterministic

    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_an_operation_without_a_deterministic_kernel_is_one_line_naming_it():
    import torch
    import torch.nn.functional as F

    from cifar_exp.components.guards import NoDeterministicKernel, deterministic_hint
    from cifar_exp.runtime.device import set_deterministic

    try:
        set_deterministic(True)
        with pytest.raises(NoDeterministicKernel) as err, deterministic_hint(torch.device("cpu")):
            F.max_unpool1d(torch.rand(1, 1, 2), torch.tensor([[[0, 1]]]), 2)
    finally:
        set_deterministic(False)
    message = str(err.value)
    assert message.startswith("trainer.deterministic=true: max_unpooling2d_forward_out has no")
    assert "\n" not in message


def test_intermediate_micro_batches_skip_ddps_all_reduce(tmp_path):
    import torch
    import torch.distributed as dist

    from cifar_exp.training.engine import gradient_sync

    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        with gradient_sync(ddp, last=False):
            assert not ddp.require_backward_grad_sync
        with gradient_sync(ddp, last=True):
            assert ddp.require_backward_grad_sync
    finally:
        dist.destroy_process_group()


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

    code, output = output_in_process(f"resume={stopped}", "trainer.epochs=10", cwd=tmp_path)
    assert code == 1
    assert f"the run in {stopped} is finished: it stopped after epoch 6" in output


def test_an_early_stopped_run_killed_before_it_recorded_its_end_finishes_on_resume(
    stopped, tmp_path
):
    """last.pt holds the stop (the epoch a rule ended it at), metrics.json no `final` yet and
    the manifest `running`, as a SIGKILL leaves them there: resume= records the end instead
    of answering "is finished" for ever, and trains no epoch more."""
    run_dir = copy_of(stopped, tmp_path)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    recorded, metrics["final"] = metrics["final"], None
    metrics_file.write_text(json.dumps(metrics))
    info = manifest(run_dir)
    (run_dir / "manifest.json").write_text(json.dumps({**info, "status": "running"}))

    assert run_in_process(f"resume={run_dir}", cwd=tmp_path) == 0
    final = json.loads(metrics_file.read_text())["final"]
    assert strip_timing({"epochs": [], "final": final}) == strip_timing(
        {"epochs": [], "final": recorded}
    )
    assert final["stopped_early_at_epoch"] == STOPPED_AT
    assert manifest(run_dir)["status"] == "ok"
    code, output = output_in_process(f"resume={run_dir}", cwd=tmp_path)
    assert code == 1 and f"the run in {run_dir} is finished" in output
