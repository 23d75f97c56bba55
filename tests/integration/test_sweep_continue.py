"""Continuing a sweep: the same -m command into the same folder finishes what was left.

Real processes throughout: a sweep SIGKILLed while a job trains, then continued with the same
command (under the basic, joblib and submitit launchers), must end as the uninterrupted one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_exp.records.commands import run_command
from helpers.cli import printed_command, run_cli, run_printed
from helpers.compare import TIMING_KEYS, assert_same_run, assert_same_tensorboard, snapshot
from helpers.interrupt import sigkill_when
from helpers.outputs import job_dirs, manifest, read_csv
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

# Three jobs of 32 steps an epoch: long enough to be killed while the second one trains.
SWEEP = [*TINY, "dataset.train_size=1024", "trainer.epochs=2", "optimizer.lr=1e-3,2e-3,3e-3"]


def sweep_args(sweep_dir: Path, *extra: str) -> list[str]:
    return ["-m", *SWEEP, *extra, f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(sweep_dir: Path, *extra: str) -> str:
    proc = run_cli(*sweep_args(sweep_dir, *extra), cwd=sweep_dir.parent)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return output


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    """summary.csv without the measured columns."""
    rows = read_csv(sweep_dir / "summary.csv")
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep never interrupted."""
    sweep_dir = tmp_path_factory.mktemp("reference") / "sweep"
    run_sweep(sweep_dir)
    return sweep_dir


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """The same sweep, SIGKILLed while its second job trains (after its first checkpoint)."""
    sweep_dir = tmp_path_factory.mktemp("killed") / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *sweep_args(sweep_dir)],
        cwd=sweep_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigkill_when(proc, lambda: list(sweep_dir.glob("1_*/checkpoints/last.pt")))
    assert [p.name[0] for p in job_dirs(sweep_dir)] == ["0", "1"]
    assert manifest(job_dirs(sweep_dir)[1])["status"] == "running"  # killed: no time to say so
    return sweep_dir


LAUNCHERS = [
    pytest.param([], id="basic"),
    pytest.param(
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        id="joblib",
        marks=[needs_plugin("hydra_plugins.hydra_joblib_launcher"), pytest.mark.slow],
    ),
    pytest.param(
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
        id="submitit",
        marks=[needs_plugin("hydra_plugins.hydra_submitit_launcher"), pytest.mark.slow],
    ),
]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_killed_sweep_continued_with_the_same_command_ends_like_the_uninterrupted_one(
    reference, killed, launcher, tmp_path
):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(killed, sweep_dir)
    finished_job = job_dirs(sweep_dir)[0]
    before = snapshot(finished_job)

    output = run_sweep(sweep_dir, *launcher)

    assert "1 finished (kept), 1 to resume from last.pt" in output
    assert snapshot(finished_job) == before  # not run again: not one byte or time changed
    assert [p.name for p in job_dirs(sweep_dir)] == [p.name for p in job_dirs(reference)]
    for ref_job, job in zip(job_dirs(reference), job_dirs(sweep_dir), strict=True):
        assert_same_run(ref_job, job)  # checkpoints bitwise, metrics.json without timings
        assert_same_tensorboard(ref_job, job)
        assert manifest(job)["status"] == "ok"
    resumed = manifest(job_dirs(sweep_dir)[1])
    assert resumed["resumed_from"].endswith("last.pt")
    assert [a["status"] for a in resumed["previous_attempts"]] == ["running"]
    assert summary_rows(sweep_dir) == summary_rows(reference)


def test_a_changed_sweep_into_the_same_folder_is_refused_and_changes_nothing(reference, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(reference, sweep_dir)
    before = snapshot(sweep_dir)
    changed = [
        a.replace("optimizer.lr=1e-3,2e-3,3e-3", "optimizer.lr=1e-3,1e-2")
        for a in sweep_args(sweep_dir, "trainer.seed=1")
    ]
    proc = run_cli(*changed, cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stdout + proc.stderr
    (line,) = [x for x in err.splitlines() if "holds a sweep started with other overrides" in x]
    assert (
        "(optimizer.lr=1e-3,2e-3,3e-3 is now optimizer.lr=1e-3,1e-2; trainer.seed=1 is new)" in line
    )
    assert "Traceback" not in err
    assert snapshot(sweep_dir) == before


def test_failed_jobs_are_kept_unless_rerun_failed_is_asked(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, "optimizer.lr=1e-3,-1", f"hydra.sweep.dir={sweep_dir}"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    failed = sweep_dir / "1_optimizer.lr=-1"
    before = snapshot(sweep_dir / "0_optimizer.lr=0.001"), snapshot(failed)

    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0
    assert "1 finished (kept), 1 failed (kept; rerun_failed=true reruns them)" in proc.stdout
    assert (snapshot(sweep_dir / "0_optimizer.lr=0.001"), snapshot(failed)) == before

    proc = run_cli(*args, "rerun_failed=true", cwd=tmp_path)
    assert proc.returncode == 0
    assert "1 finished (kept), 1 to start (over)" in proc.stdout
    rerun = manifest(failed)
    assert rerun["status"] == "failed" and len(rerun["previous_attempts"]) == 1
    assert snapshot(sweep_dir / "0_optimizer.lr=0.001") == before[0]
    with (sweep_dir / "summary.csv").open() as f:
        assert "rerun_failed" not in f.readline()  # how to continue is no column of the table


def test_a_sweep_stopped_by_sigterm_says_how_to_continue_and_continues(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, "dataset.train_size=1024", "trainer.epochs=2", "trainer.seed=0,1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(sweep_dir.glob("0_*/checkpoints/last.pt")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.terminate()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    command = printed_command(out, "Continue the whole sweep with: ")
    assert command == run_command([*args, f"hydra.sweep.dir={sweep_dir}"])

    output = run_printed(command, cwd=tmp_path)
    assert output.returncode == 0, (output.stdout + output.stderr)[-3000:]
    assert (
        "continuing the sweep in" in output.stdout and "1 to resume from last.pt" in output.stdout
    )
    first, second = job_dirs(sweep_dir)
    assert [a["status"] for a in manifest(first)["previous_attempts"]] == ["interrupted"]
    assert manifest(first)["status"] == manifest(second)["status"] == "ok"
