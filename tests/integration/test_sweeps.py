"""Sweeps through the real entrypoint: job folders, summaries, failures, seeds, the report."""

from __future__ import annotations

from pathlib import Path

from cifar_exp.sweeps.jobs import available_cpus
from helpers.cli import run_cli
from helpers.outputs import job_dirs, read_csv
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

# TINY without its thread count, for launchers that choose threads per job themselves.
TINY_ANY_THREADS = [*TINY, "trainer.num_threads=0"]


def sweep(tmp_path: Path, *overrides: str, timeout: int = 300) -> tuple[Path, str]:
    """Run `python -m cifar_exp.run -m ...` into tmp_path/sweep; return the folder and output."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, timeout=timeout
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return sweep_dir, output


@needs_plugin("hydra_plugins.hydra_joblib_launcher")
def test_joblib_launcher_runs_jobs_side_by_side_with_divided_threads(tmp_path):
    # The default sweep folder: workers are other processes and must resolve it the same way.
    proc = run_cli(
        "-m",
        *TINY_ANY_THREADS,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "optimizer.lr=1e-3,3e-3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(r["overrides"] for r in rows) == ["optimizer.lr=0.001", "optimizer.lr=0.003"]
    assert all(r["status"] == "ok" for r in rows)
    threads = max(1, available_cpus() // 2)
    for job_dir in job_dirs(sweep_dir):
        assert f"{threads} CPU thread(s) for this job" in (job_dir / "run.log").read_text()


@needs_plugin("hydra_plugins.hydra_submitit_launcher")
def test_submitit_local_launcher_runs_the_sweep(tmp_path):
    sweep_dir, _ = sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "optimizer.lr=1e-3,-1",
    )
    rows = {int(r["job"]): r for r in read_csv(sweep_dir / "summary.csv")}
    assert rows[0]["status"] == "ok" and float(rows[0]["test_acc"]) > 0
    assert rows[1]["status"] == "failed: optimizer.lr must be > 0, got -1.0"
    assert [p.name for p in job_dirs(sweep_dir)] == ["0_optimizer.lr=0.001", "1_optimizer.lr=-1"]
