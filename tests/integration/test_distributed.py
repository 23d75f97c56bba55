"""DDP under a real torchrun: two Gloo processes on the CPU against one process."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.tracking import STEP_LOSS_TAG
from helpers.cli import run_in_process, torchrun
from helpers.events import load_events, tensorboard_points
from helpers.overrides import TINY

# 250 training images in global batches of 32 (7 full + 26: shares of 16, then 13);
# 125 test images, so the two processes score 63 and 62 of them.
SHARED = [
    *TINY,
    "dataset.train_size=250",
    "dataset.test_size=125",
    "trainer.epochs=2",
    "trainer.eval_batch_size=50",
    "trainer.log_every_n_steps=1",
]


# Float sums in another order (DDP averages two half-batch gradients) drift a little over
# 16 Adam steps (measured: at most 2.4e-7); a wrong shard, batch or reduction changes the
# loss by far more than this.
LOSS_TOLERANCE = 1e-5


def step_losses(run_dir):
    return [(e.step, e.value) for e in load_events(run_dir).Scalars(STEP_LOSS_TAG)]


def test_two_processes_share_one_run_dir_and_match_one_process(tmp_path):
    single = tmp_path / "single"
    assert run_in_process(*SHARED, f"hydra.run.dir={single}", cwd=tmp_path) == 0
    launch = tmp_path / "launch"
    launch.mkdir()
    proc = torchrun(*SHARED, cwd=launch)  # the default hydra.run.dir, as a user would
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = [p for p in (launch / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    ddp = runs[0]
    assert len(list(ddp.glob("events.out.tfevents.*"))) == 1  # one event log: rank 0's
    assert sorted(p.name for p in (ddp / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    log_text = (ddp / "run.log").read_text()
    assert log_text.count("final test accuracy") == 1
    assert "batch 32 (global) = 2 process(es) x 16" in log_text

    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((ddp / "metrics.json").read_text())
    assert (two["world_size"], two["batch_size_per_process"]) == (2, 16)
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        # Accuracies are counts over the whole splits, not over one process's share.
        assert round(b["test_acc"] * 125, 6).is_integer()
        assert round(b["train_acc"] * 250, 6).is_integer()
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=1 / 125 + 1e-9)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=LOSS_TOLERANCE)
        assert b["test_loss"] == pytest.approx(a["test_loss"], abs=LOSS_TOLERANCE)
    curve_one, curve_two = step_losses(single), step_losses(ddp)
    assert [s for s, _ in curve_two] == list(range(1, 17))  # 8 global batches x 2 epochs
    assert [s for s, _ in curve_one] == [s for s, _ in curve_two]
    for (_, a), (_, b) in zip(curve_one, curve_two, strict=True):
        assert b == pytest.approx(a, abs=LOSS_TOLERANCE)


def test_two_processes_write_one_checkpoint_and_resume_under_torchrun(tmp_path):
    proc = torchrun(*SHARED, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    run_dir = runs[0]
    # Rank 0 alone writes: one last.pt (and best.pt), no leftovers of a concurrent write.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert list(tmp_path.rglob("last.pt")) == [run_dir / "checkpoints" / "last.pt"]
    assert list(tmp_path.rglob("manifest.json")) == [run_dir / "manifest.json"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["resumed_from"] is None
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (2, 16)
    before = json.loads((run_dir / "metrics.json").read_text())

    proc = torchrun(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()] == [run_dir]
    assert list(tmp_path.rglob("manifest.json")) == [run_dir / "manifest.json"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    # The first attempt's epochs are kept as they were; the resumed one adds epoch 3.
    assert metrics["epochs"][:2] == before["epochs"]
    assert metrics["final"]["epochs"] == 3 and metrics["world_size"] == 2
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (3, 24)
    assert (state["progress"]["batch"], len(state["tracker"]["metrics"]["epochs"])) == (0, 3)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["resumed_from"] == str(run_dir / "checkpoints" / "last.pt")
    assert [a["status"] for a in manifest["previous_attempts"]] == ["ok"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # rank 0's, old ones moved in
    points = tensorboard_points(run_dir)
    assert [step for step, _ in points[STEP_LOSS_TAG]] == list(range(1, 25))
    assert [step for step, _ in points["test/acc"]] == [1, 2, 3]
    assert (run_dir / "run.log").read_text().count("resumed from") == 1


def test_global_batch_not_divisible_by_processes_is_a_clear_error(tmp_path):
    proc = torchrun(*TINY, "trainer.batch_size=33", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode != 0
    assert (
        "trainer.batch_size=33 is the global batch and must be divisible by the 2 processes"
        in proc.stdout + proc.stderr
    )


@pytest.mark.slow
def test_a_per_image_policy_under_two_processes_matches_one_process(tmp_path):
    """A policy's draws follow each image, not its process: two processes train on the images
    one process does, so the runs agree as the plain ones do."""
    policy = [*SHARED, "augment.policy=trivialaugment", "trainer.epochs=1"]
    single = tmp_path / "single"
    assert run_in_process(*policy, f"hydra.run.dir={single}", cwd=tmp_path) == 0
    proc = torchrun(*policy, f"hydra.run.dir={tmp_path / 'ddp'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    curve_one, curve_two = step_losses(single), step_losses(tmp_path / "ddp")
    assert [s for s, _ in curve_one] == [s for s, _ in curve_two] == list(range(1, 9))
    for (_, a), (_, b) in zip(curve_one, curve_two, strict=True):
        assert b == pytest.approx(a, abs=LOSS_TOLERANCE)


def test_a_killed_rank_leaves_the_other_one_line_and_a_run_that_resumes(tmp_path):
    run_dir = tmp_path / "run"
    launch = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "cifar_exp.run", *TINY, "trainer.epochs=100000", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert launch.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    (rank_1,) = [pid for pid in children(launch.pid) if b"\0RANK=1\0" in environ(pid)]
    os.kill(rank_1, signal.SIGKILL)
    out = launch.communicate(timeout=120)[0]
    assert launch.returncode != 0
    (line,) = [line for line in out.splitlines() if "another process of this torchrun" in line]
    assert (
        "rank 0: another process of this torchrun launch ended (connection reset by peer)" in line
    )
    assert f"Continue with the same torchrun command and resume={run_dir}" in line
    # No traceback of rank 0's: only torchrun's own report of rank 1's SIGKILL.
    assert out.count("Traceback") == 1 and "torch.distributed.elastic" in out.split("Traceback")[1]
    assert "pair.cc" not in out and "Signal 9 (SIGKILL) received by PID" in out
    info = json.loads((run_dir / "manifest.json").read_text())
    assert info["status"] == "failed" and info["reason"] == line.split(" - ", 1)[1]

    epoch = load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]["epoch"]
    proc = torchrun(f"resume={run_dir}", f"trainer.epochs={epoch + 1}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["final"]["epochs"] == epoch + 1


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(c) for t in tasks for c in (t / "children").read_text().split()]


def environ(pid: int) -> bytes:
    return b"\0" + Path(f"/proc/{pid}/environ").read_bytes()


def slurm_tasks(*overrides: str, cwd: Path, job_id: str, **changes: str) -> list:
    """Two processes started as srun starts a job step's tasks: SLURM_PROCID, SLURM_LOCALID,
    SLURM_NTASKS, SLURM_STEP_NUM_TASKS and the node list set for each, no torchrun."""
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "SLURM_JOB_ID": job_id,
            "SLURM_STEP_ID": "0",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_NTASKS": "2",
            "SLURM_STEP_NUM_TASKS": "2",
            "SLURM_JOB_NODELIST": "localhost",
            **changes,
        }
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cifar_exp.run", *overrides],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return [(p.wait(timeout=300), p.stdout.read()) for p in procs]


def test_slurm_tasks_train_one_run_as_torchrun_would(tmp_path):
    run_dir = tmp_path / "run"
    ends = slurm_tasks(*SHARED, f"hydra.run.dir={run_dir}", cwd=tmp_path, job_id="5150")
    assert [code for code, _ in ends] == [0, 0], [out[-2000:] for _, out in ends]
    two = json.loads((run_dir / "metrics.json").read_text())
    assert (two["world_size"], two["batch_size_per_process"]) == (2, 16)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert (run_dir / "run.log").read_text().count("final test accuracy") == 1

    # Variables that disagree: one line from each task, nothing written.
    bad = tmp_path / "bad"
    ends = slurm_tasks(
        *SHARED, f"hydra.run.dir={bad}", cwd=tmp_path, job_id="5151", SLURM_NTASKS="3"
    )
    for code, out in ends:
        assert code == 1 and "Traceback" not in out, out[-2000:]
        assert "the job's task variables disagree: SLURM_NTASKS=3 but SLURM_STEP_NUM_TASKS=2" in out
    assert not bad.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="the submitit launcher is not installed: pip install -e '.[sweeps]'",
)
def test_a_sweep_whose_jobs_each_run_two_processes(tmp_path):
    """submitit's local executor with tasks_per_node=2: each job of a 2-job sweep is two
    processes (gloo) that find each other from the job's task variables; the first writes."""
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cifar_exp.run",
            "-m",
            *SHARED,
            "optimizer.lr=1e-3,3e-3",
            "hydra/launcher=submitit_local",
            "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.timeout_min=5",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = sorted(p for p in sweep_dir.glob("[0-9]_*") if p.is_dir())
    assert [j.name for j in jobs] == ["0_optimizer.lr=0.001", "1_optimizer.lr=0.003"]
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert (metrics["world_size"], metrics["batch_size_per_process"]) == (2, 16)
        assert len(list(job.glob("events.out.tfevents.*"))) == 1
        assert (job / "run.log").read_text().count("final test accuracy") == 1
    rows = (sweep_dir / "summary.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and all(",ok" in row or row.endswith("ok") for row in rows[1:]), rows
