"""Pruning a search's hopeless trials from inside their jobs, decided by a real study (no
mocked pruner): each job reports its per-epoch validation accuracy to its own trial through
the study's storage and stops at the epoch boundary where the pruner says so."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.interrupt import sigkill_when
from helpers.outputs import read_csv
from helpers.plugins import needs_plugin
from helpers.pruning_search import HOPELESS, SEARCH, study

pytestmark = needs_plugin("optuna")


# Two trials at a time, each job in a process of its own.
PARALLEL_LAUNCHERS = [
    pytest.param(
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        id="joblib",
        marks=needs_plugin("hydra_plugins.hydra_joblib_launcher"),
    ),
    pytest.param(
        ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
        id="submitit",
        marks=[needs_plugin("hydra_plugins.hydra_submitit_launcher"), pytest.mark.slow],
    ),
]


@pytest.mark.parametrize("launcher", PARALLEL_LAUNCHERS)
def test_jobs_in_worker_processes_report_to_their_trials_and_are_pruned(launcher, tmp_path):
    """Two trials at a time in the launcher's worker processes, each reaching its own trial
    through the study's file. Trials 4 and 5 (hopeless, asked together) are judged against
    the three finished ones and pruned; trial 1 runs beside trial 0, before any trial
    finished, so the median pruner (1 start-up trial) may not judge it yet."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        *SEARCH, *launcher, "hydra.sweeper.n_jobs=2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    trials = study(sweep_dir).trials
    hopeless = [t.params["optimizer.lr"] == HOPELESS for t in trials]
    assert hopeless == [False, True, False, False, True, True]
    states = [t.state.name for t in trials]
    assert [states[n] for n in (0, 2, 3)] == ["COMPLETE"] * 3
    assert states[4] == states[5] == "PRUNED"
    rows = {int(r["job"]): r for r in read_csv(sweep_dir / "summary.csv")}
    for number in (4, 5):
        assert sorted(trials[number].intermediate_values) == [1, 2]
        assert rows[number]["status"] == "pruned at epoch 2"
        manifest = json.loads((sweep_dir / rows[number]["dir"] / "manifest.json").read_text())
        assert manifest["status"] == "pruned" and manifest["pruned_at_epoch"] == 2


def reported(db: Path, number: int, step: int) -> bool:
    """Whether trial `number` has reported a value for `step` (Optuna's own tables)."""
    import sqlite3

    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=1)) as conn:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t "
                "ON v.trial_id = t.trial_id WHERE t.number = ? AND v.step = ?",
                (number, step),
            ).fetchone()
    except sqlite3.OperationalError:  # the tables are not made yet, or the file is busy
        return False
    return count > 0


def test_a_search_killed_as_its_trial_reports_the_pruned_epoch_ends_it_pruned(tmp_path):
    """SIGKILL the search the moment hopeless trial 1 has reported epoch 2 to the study, the
    report the pruner stops it on; the same command continued runs trial 1 again from its
    last checkpoint and ends it pruned at epoch 2, with no epoch recorded twice."""
    sweep_dir = tmp_path / "sweep"
    command = [*SEARCH, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *command],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigkill_when(proc, lambda: reported(sweep_dir / "optuna.db", number=1, step=2))
    assert [t.state.name for t in study(sweep_dir).trials] == ["COMPLETE", "RUNNING"]

    again = run_cli(*command, cwd=tmp_path)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "running again the 1 trial(s) this sweep left running" in output
    trials = study(sweep_dir).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    assert sorted(trials[1].intermediate_values) == [1, 2]
    (job,) = sweep_dir.glob("1_*")
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["status"] == "pruned" and manifest["pruned_at_epoch"] == 2
    assert manifest["resumed_from"].endswith("last.pt")
    epochs = json.loads((job / "metrics.json").read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    rows = {int(r["job"]): r for r in read_csv(sweep_dir / "summary.csv")}
    assert rows[1]["status"] == "pruned at epoch 2" and rows[0]["status"] == "ok"
