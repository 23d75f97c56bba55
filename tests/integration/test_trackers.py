"""The trackers beside TensorBoard (tracker=[...]): MLflow on a real SQLite store read back
with MLflow's own client, metrics.csv, Weights & Biases offline; one tracker run per job,
grouped by sweep, continued on resume; a tracker that cannot be used is one line."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.cli import output_in_process, run_cli, run_in_process, start_run, wait_for
from helpers.compare import TIMING_KEYS
from helpers.outputs import job_dirs, manifest
from helpers.overrides import TINY
from helpers.paths import REPO
from helpers.plugins import needs_plugin

mlflow = pytest.importorskip("mlflow", reason='the MLflow tests need pip install -e ".[mlflow]"')
from mlflow.tracking import MlflowClient  # noqa: E402

from helpers.mlflow_store import (  # noqa: E402 (after the skip above)
    assert_epochs_as_in_metrics_json,
    history,
    mlflow_args,
    runs_of,
)

# 32 steps an epoch, 4 epochs: long enough to be killed in the middle of one.
LONG = [*TINY, "dataset.train_size=1024", "trainer.epochs=4"]


def assert_no_step_twice(store: str, run) -> None:
    for tag in run.data.metrics:
        steps = [s for s, _ in history(store, run.info.run_id, tag)]
        assert steps == sorted(set(steps)), f"{tag}: {steps}"


def epochs_logged(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "metrics.json").read_text())["epochs"])
    except (OSError, ValueError):
        return 0


def test_a_run_killed_mid_epoch_and_resumed_is_one_mlflow_run_without_a_step_twice(store, tmp_path):
    reference = tmp_path / "reference"
    assert run_in_process(*LONG, f"hydra.run.dir={reference}", cwd=tmp_path) == 0
    run_dir = tmp_path / "run"
    # Checkpoints every 2 epochs: killed in epoch 4, the run has logged epoch 3 into MLflow
    # beyond its checkpoint (epoch 2), which the resumed attempt trains and logs again.
    args = [*LONG, "trainer.checkpoint_every=2", *mlflow_args(store, "resume")]
    proc = start_run(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for(lambda: epochs_logged(run_dir) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (killed,) = runs_of(store, "resume")
    assert killed.info.status == "RUNNING"  # killed: nobody could say otherwise
    assert (
        max(
            m.step for m in MlflowClient(store).get_metric_history(killed.info.run_id, "train/loss")
        )
        == 3
    )

    assert run_in_process(f"resume={run_dir}", cwd=tmp_path) == 0
    (run,) = runs_of(store, "resume")
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert manifest(run_dir)["tracker_runs"] == {"mlflow": run.info.run_id}
    assert_no_step_twice(store, run)
    assert_epochs_as_in_metrics_json(store, run, reference, timings=False)
    final = json.loads((reference / "metrics.json").read_text())["final"]
    for key, value in final.items():
        if key not in TIMING_KEYS:
            assert run.data.metrics[f"final/{key}"] == value, key


def test_a_continued_sweep_logs_into_the_same_child_runs(store, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        *TINY,
        "dataset.train_size=1024",
        "trainer.epochs=2",
        "optimizer.lr=1e-3,2e-3",
        *mlflow_args(store, "continued"),
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = start_run(*args, cwd=tmp_path)
    wait_for(lambda: bool(list(sweep_dir.glob("1_*/checkpoints/last.pt"))), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    before = {r.data.tags.get("run_dir"): r.info.run_id for r in runs_of(store, "continued")}
    assert len(before) == 3  # the parent and two jobs

    assert run_in_process(*args, cwd=tmp_path) == 0
    runs = runs_of(store, "continued")
    assert {r.data.tags.get("run_dir"): r.info.run_id for r in runs} == before
    assert all(r.info.status == "FINISHED" for r in runs)
    for job in job_dirs(sweep_dir):
        (run,) = [r for r in runs if r.data.tags.get("run_dir") == str(job)]
        assert_no_step_twice(store, run)
        assert_epochs_as_in_metrics_json(store, run, job, timings=False)


def test_under_torchrun_only_rank_0_writes_to_mlflow(store, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "cifar_exp.run", *TINY, *mlflow_args(store, "torchrun")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (run,) = runs_of(store, "torchrun")
    assert run.info.status == "FINISHED"
    assert_no_step_twice(store, run)
    assert math.isfinite(run.data.metrics["final/test_acc"])


@pytest.mark.slow
@needs_plugin("hydra_plugins.hydra_joblib_launcher")
def test_jobs_side_by_side_open_a_new_store_and_share_one_parent_run(tmp_path):
    """Three joblib workers at once into a store none of them created: MLflow creates a new
    store's tables on first use, which they must not do at the same time."""
    store = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]
    args = ["-m", *TINY, "optimizer.lr=1e-3,2e-3,3e-3", *launcher, *mlflow_args(store, "joblib")]
    proc = run_cli(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    runs = runs_of(store, "joblib")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 4 and len(children) == 3
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_full_disk_fails_mlflow_in_one_line_and_the_resume_ends_its_run(tmp_path):
    folder = tmp_path / "small disk"
    folder.mkdir()
    # A private mount namespace: a user without root may mount a tmpfs there.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "helpers.full_disk", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0 and "mount" in proc.stderr and "helpers.full_disk" not in proc.stderr:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    out = result["output"]
    assert result["code"] == 1 and "Traceback" not in out and "SQLAlchemy" not in out, out
    (warning,) = [line for line in out.splitlines() if "tracker.mlflow failed" in line]
    assert "tracker.mlflow failed (OperationalError: database or disk is full)" in warning
    assert "No space left on device" in out.splitlines()[-1]
    # Its run stays open (the disk takes no status either), as the warning says...
    assert result["after_failure"] == ["RUNNING"] and "stays open until" in warning
    # ...until the resume, which continues that MLflow run and ends it.
    assert result["resumed_code"] == 0, result["resumed_output"][-3000:]
    assert result["after_resume"] == ["FINISHED"]


def test_a_damaged_parent_run_record_gets_a_new_parent_run(store, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", *TINY, *mlflow_args(store, "damaged record"), f"hydra.sweep.dir={sweep_dir}"]
    assert run_in_process(*args, "optimizer.lr=1e-3,3e-3", cwd=tmp_path) == 0
    record = sweep_dir / "mlflow_parent.json"
    record.write_text(record.read_text()[:10])  # cut short by a kill or a full disk
    shutil.rmtree(job_dirs(sweep_dir)[1])  # a job the continued sweep runs again
    code, printed = output_in_process(*args, "optimizer.lr=1e-3,3e-3", cwd=tmp_path)
    assert code == 0 and "Traceback" not in printed, printed[-2000:]
    assert f"tracker.mlflow: {record} is damaged (" in printed
    runs = runs_of(store, "damaged record")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert json.loads(record.read_text()) == {store: parents[0].info.run_id}  # the newest
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}


# Moved from tests/test_trackers.py: each takes about 10 s, too long for the default suite.
def test_a_sweep_is_a_parent_run_with_a_child_per_job_and_their_statuses(store, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # lr=1e4 diverges to a non-finite loss: those jobs fail, the others finish.
    swept = ["optimizer=sgd", "optimizer.lr=0.01,1e4", "trainer.seed=0,1"]
    code = run_in_process(
        "-m",
        *TINY,
        "trainer.epochs=2",
        *swept,
        *mlflow_args(store, "sweep"),
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert code == 0
    runs = runs_of(store, "sweep")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4
    assert parent.info.status == "FINISHED" and parent.info.run_name == sweep_dir.name
    by_dir = {r.data.tags["run_dir"]: r for r in children}
    assert sorted(by_dir) == [str(p) for p in job_dirs(sweep_dir)]
    for job in job_dirs(sweep_dir):
        run = by_dir[str(job)]
        assert manifest(job)["tracker_runs"] == {"mlflow": run.info.run_id}
        typed = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        lr = float(run.data.params["optimizer.lr"])
        assert lr == float(typed["optimizer.lr"])
        assert run.data.params["trainer.seed"] == typed["trainer.seed"]
        if lr > 1:
            assert run.info.status == "FAILED"
            assert "non-finite" in run.data.tags["failure_reason"]
            assert manifest(job)["status"] == "failed"
        else:
            assert run.info.status == "FINISHED"
            assert_epochs_as_in_metrics_json(store, run, job)
            final = json.loads((job / "metrics.json").read_text())["final"]
            assert run.data.metrics["final/test_acc"] == final["test_acc"]
            assert run.data.params["model.name"] == "lenet5"
            client = MlflowClient(tracking_uri=store)
            assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]


def test_wandb_offline_keeps_its_run_id_across_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason='the W&B test needs pip install -e ".[wandb]"')
    from cifar_exp.tracking.wandb_writer import wandb_run_id

    run_dir = tmp_path / "run"
    args = [*TINY, "tracker=[tensorboard,wandb]", "trainer.log_images=true"]
    args.append(f"hydra.run.dir={run_dir}")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline unless configured otherwise
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert run_in_process(*args, cwd=tmp_path) == 0
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=2", cwd=tmp_path) == 0
    run_id = wandb_run_id(run_dir)
    assert manifest(run_dir)["tracker_runs"] == {"wandb": run_id}
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(p.name.endswith(f"-{run_id}") for p in offline)
    assert all((p / f"run-{run_id}.wandb").is_file() for p in offline)
    # The pictures, as W&B images: the training batch and a confusion matrix at least.
    images = offline[0] / "files" / "media" / "images"
    media = {str(p.relative_to(images)).rsplit("_", 2)[0] for p in images.rglob("*.png")}
    assert media == {
        "visual/train_batch",
        "visual/test_confusion",
        "visual/test_per_class_acc",
        "visual/test_misclassified",
    }, media
