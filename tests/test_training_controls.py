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
from helpers.cli import run_cli, run_in_process, start_run, torchrun
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


# -- gradient clipping, accumulation, the deterministic mode --------------------------------

# Per-step curves of a LeNet5 (no BatchNorm: micro-batches see the same function) run.
STEPS = [*TINY, "trainer.epochs=2", "trainer.log_every_n_steps=1"]
# Measured total gradient norms of STEPS lie between 0.16 and 0.34: this clips about half.
CLIP = "trainer.grad_clip.norm=0.25"
# Sums in another order (micro-batches, two processes) drift a little over the steps; a wrong
# weighting of the micro-batches or a missed all-reduce changes the loss by far more.
LOSS_TOLERANCE = 1e-5


def step_curve(run_dir, tag="train_step/loss"):
    return tensorboard_points(run_dir)[tag]


def assert_close_curves(a, b, tolerance=LOSS_TOLERANCE):
    assert [step for step, _ in a] == [step for step, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert y == pytest.approx(x, abs=tolerance)


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

    from cifar_exp.engine import clip_gradients

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

    from cifar_exp.engine import micro_batches

    images, labels = torch.rand(13, 3, 4, 4), torch.arange(13)
    parts = micro_batches(images, labels, 4)
    assert [len(y) for _, y in parts] == [4, 3, 3, 3]
    assert torch.equal(torch.cat([y for _, y in parts]), labels)
    assert [len(y) for _, y in micro_batches(images[:2], labels[:2], 4)] == [1, 1]


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


def test_the_deterministic_mode_sets_torchs_flags_and_changes_nothing_on_the_cpu(tmp_path):
    import torch

    from cifar_exp.device import set_deterministic

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

    from cifar_exp.device import set_deterministic
    from cifar_exp.guards import NoDeterministicKernel, deterministic_hint

    try:
        set_deterministic(True)
        with pytest.raises(NoDeterministicKernel) as err, deterministic_hint(torch.device("cpu")):
            F.max_unpool1d(torch.rand(1, 1, 2), torch.tensor([[[0, 1]]]), 2)
    finally:
        set_deterministic(False)
    message = str(err.value)
    assert message.startswith("trainer.deterministic=true: max_unpooling2d_forward_out has no")
    assert "\n" not in message


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


def test_intermediate_micro_batches_skip_ddps_all_reduce(tmp_path):
    import torch
    import torch.distributed as dist

    from cifar_exp.engine import gradient_sync

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
