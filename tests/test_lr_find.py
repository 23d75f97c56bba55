"""`python -m cifar_exp.lr_find`: Smith's range test on synthetic data, the entrypoint run in
process; its curve checked against training replayed at the lrs it wrote, and the command it
prints run as printed."""

import json
import math
import re
import shlex

import pytest
from PIL import Image

from cifar_exp.config import LrFindOptions
from cifar_exp.errors import UserError
from cifar_exp.lr_find import range_test, suggestion, sweep_config
from cifar_exp.training.build import build_trainer
from helpers.cli import printed_command, run_cli_in_process, run_in_process
from helpers.compare import snapshot
from helpers.overrides import TINY

LR_FIND = "cifar_exp.lr_find"
TYPED = [*TINY, "dataset.train_size=512", "lr_find.num_steps=40"]


def moving_average(losses, beta):
    """The smoothed loss, written again here: a debiased exponential moving average."""
    out, average = [], 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def test_the_range_test_writes_the_curve_it_measured_and_a_suggestion_in_range(
    tmp_path, compose_tool
):
    out = tmp_path / "lr"
    proc = run_cli_in_process(*TYPED, f"hydra.run.dir={out}", cwd=tmp_path, module=LR_FIND)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "lr_find.json").read_text())
    options = LrFindOptions(**result["options"])
    lrs, losses = result["lr"], result["loss"]

    # The sweep: exponential from start_lr towards end_lr, one lr per step taken.
    growth = (options.end_lr / options.start_lr) ** (1 / (options.num_steps - 1))
    assert lrs[0] == pytest.approx(options.start_lr)
    assert all(b / a == pytest.approx(growth) for a, b in zip(lrs, lrs[1:], strict=False))
    assert len(lrs) == len(losses) == result["steps"] <= options.num_steps
    # Synthetic data, Adam up to lr 10: the loss blows up before the last step, and the test
    # stopped there.
    assert result["stopped"].startswith("diverged at step") and result["steps"] < 40
    curve = moving_average(losses, options.smoothing)
    assert result["smoothed_loss"] == pytest.approx(curve)
    # It stopped at the first step whose loss, or smoothed loss, left diverge_factor times
    # the lowest smoothed loss before it.
    limits = [options.diverge_factor * min(curve[:k]) for k in range(1, len(curve))]
    pairs = zip(curve[1:-1], losses[1:-1], limits[:-1], strict=True)
    assert all(max(c, x) <= lim for c, x, lim in pairs)
    assert max(curve[-1], losses[-1]) > limits[-1] or not math.isfinite(losses[-1])

    # The suggestion: one of the lrs swept, inside the range, where the curve falls, before
    # the curve's lowest point.
    best, lowest = result["suggested_step"], result["lowest_loss_step"]
    assert result["suggested_lr"] == lrs[best] and result["lowest_loss_lr"] == lrs[lowest]
    assert curve[lowest] == min(curve)
    assert options.start_lr <= lrs[best] <= options.end_lr
    assert options.skip_start <= best < lowest
    assert curve[best + 1] < curve[best - 1]

    # The curve is what training measured: the run's own build, stepped at the lrs written.
    trainer, _ = build_trainer(
        sweep_config(compose_tool("lr_find", TYPED), options), tmp_path / "replay", record=False
    )
    trainer.model.train()
    replayed, batches = [], iter([])
    for lr in lrs:
        batch = next(batches, None)
        if batch is None:  # a new epoch, as the range test walks the loader
            trainer.loaders.train.set_epoch(len(replayed) // len(trainer.loaders.train) + 1)
            batches = iter(trainer.loaders.train)
            batch = next(batches)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        replayed.append(trainer.step(*batch)[0].item())
    assert replayed[:-1] == pytest.approx(losses[:-1], rel=1e-6)
    assert not math.isfinite(losses[-1]) or losses[-1] == pytest.approx(replayed[-1], rel=1e-4)

    with Image.open(out / "lr_find.png") as png:
        assert png.format == "PNG" and png.size == (700, 450)
    printed = proc.stdout
    assert f"suggested lr {lrs[best]:.3g}" in printed
    command = printed_command(printed, "train with: ")
    assert command == result["command"]
    assert command == (
        f"python -m cifar_exp.run debug=tiny dataset.train_size=512 optimizer.lr={lrs[best]:.3g}"
    )
    assert not (tmp_path / "outputs").exists()  # no run folder was made
    program, *overrides = shlex.split(command.removeprefix("python -m "))
    assert program == "cifar_exp.run"
    assert run_in_process(*overrides, cwd=tmp_path) == 0
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert f"lr: {float(f'{lrs[best]:.3g}')}" in config


def test_a_misspelled_option_is_hydras_one_line_and_a_nonzero_exit(tmp_path):
    out = tmp_path / "lr"
    proc = run_cli_in_process(
        *TINY, "lr_find.num_stepz=5", f"hydra.run.dir={out}", cwd=tmp_path, module=LR_FIND
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "Key 'num_stepz' not in 'LrFindOptions'" in output and "Traceback" not in output
    assert not (out / "lr_find.json").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["lr_find.end_lr=1e-8"], "lr_find.end_lr must be > start_lr (1e-07), got 1e-08"),
        (["lr_find.num_steps=1"], "lr_find.num_steps must be >= 2, got 1"),
        (["lr_find.start_lr=0"], "lr_find.start_lr must be > 0, got 0.0"),
        (["lr_find.smoothing=1"], "lr_find.smoothing must be in [0, 1) (0 = none), got 1.0"),
        (["lr_find.diverge_factor=1"], "lr_find.diverge_factor must be > 1, got 1.0"),
        (["trainer.batch_size=0"], "trainer.batch_size must be >= 1, got 0"),
    ],
)
def test_a_bad_option_names_its_key(compose_tool, tmp_path, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        range_test(compose_tool("lr_find", [*TINY, *overrides]), tmp_path, overrides)
    assert list(tmp_path.iterdir()) == []


def test_a_resume_is_refused_and_its_run_folder_left_as_it_was(compose_tool, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    (run_dir / "manifest.json").write_text('{"status": "interrupted"}')
    before = snapshot(run_dir)
    out = tmp_path / "lr"
    out.mkdir()
    with pytest.raises(UserError, match=re.escape(f"resume={run_dir} continues a run; lr_find")):
        range_test(compose_tool("lr_find", [*TINY, f"resume={run_dir}"]), out, [])
    assert snapshot(run_dir) == before and list(out.iterdir()) == []


def test_the_suggestion_comes_from_before_the_lowest_loss_not_a_fall_after_a_blow_up():
    """The case a user met: the smoothed loss bottoms out at step 20, climbs as the lr
    grows too large, then falls steeply again on its way to a blow-up. The fall after the
    lowest point is no lr to train with."""
    falling = [2.3 - 0.06 * k for k in range(21)]  # steps 0-20: down to 1.1
    climbing = [1.1 + 0.3 * k for k in range(1, 8)]  # 21-27: up to 3.2
    crashing = [3.2 - 0.5 * k for k in range(1, 4)]  # 28-30: a steep fall, to 1.7
    curve = [2.3] * 5 + falling + climbing + crashing + [9.0]
    lrs = [1e-4 * 1.3**k for k in range(len(curve))]
    best, lowest = suggestion(lrs, curve, skip_start=3)
    assert lowest == curve.index(min(curve[:27]))  # the bottom before the climb
    assert best < lowest and curve[best + 1] < curve[best - 1]


def test_a_long_range_test_logs_progress_lines_with_its_lr_and_loss(tmp_path):
    args = [*TYPED, "trainer.log_interval_s=1e-9", f"hydra.run.dir={tmp_path / 'lr'}"]
    proc = run_cli_in_process(*args, cwd=tmp_path, module=LR_FIND)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "lr_find: step " in line]
    assert lines and re.search(
        r"lr_find: step 1/40 \(2%\), elapsed \d+m\d\ds, ETA \d+m\d\ds, lr 1e-07, smoothed loss \d",
        lines[0],
    ), lines[:2]
