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
from helpers.events import hparams_session
from helpers.interrupt import sigkill_when
from helpers.outputs import read_csv
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

pytestmark = needs_plugin("optuna")

# Half the trials hopeless: lr 1e-7 learns nothing in 3 epochs, 3e-3 learns the synthetic
# set. With the sampler's seed 0 and 10 random start-up draws the six trials draw
# good, hopeless, good, good, hopeless, hopeless. The median pruner judges from the first
# finished trial on, from epoch 2 on (n_warmup_steps=2), so each hopeless trial stops
# after epoch 2 of 3 and the good ones (all alike, never below the median) train to the end.
SEARCH = [
    "hparams_search=optuna",
    *TINY,
    "dataset.val_size=64",
    "trainer.epochs=3",
    "optimizer.lr=choice(1e-7,3e-3)",
    "optimizer.weight_decay=0",
    "trainer.batch_size=32",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.sampler.n_startup_trials=10",
    "hydra.sweeper.pruner.name=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=2",
]
HOPELESS = 1e-7


def study(sweep_dir: Path):
    import optuna

    return optuna.load_study(study_name="cifar_exp", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("pruning")
    sweep_dir = folder / "sweep"
    proc = run_cli(*SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=folder)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return sweep_dir, output


def test_hopeless_trials_are_pruned_after_the_warm_up_and_the_others_kept(pruned_search):
    sweep_dir, output = pruned_search
    trials = study(sweep_dir).trials
    hopeless = [t.params["optimizer.lr"] == HOPELESS for t in trials]
    assert hopeless == [False, True, False, False, True, True]
    assert [t.state.name for t in trials] == ["PRUNED" if bad else "COMPLETE" for bad in hopeless]
    for trial in trials:
        # Every evaluated epoch went to the trial, up to where it stopped.
        assert sorted(trial.intermediate_values) == (
            [1, 2] if hopeless[trial.number] else [1, 2, 3]
        )
    assert "3 trial(s) pruned: 1, 4, 5" in output


def test_a_pruned_jobs_folder_manifest_summary_and_hparams(pruned_search):
    sweep_dir, _ = pruned_search
    rows = {int(r["job"]): r for r in read_csv(sweep_dir / "summary.csv")}
    for number in (1, 4, 5):
        row = rows[number]
        assert row["status"] == "pruned at epoch 2" and row["epochs"] == "2"
        job = sweep_dir / row["dir"]
        assert (job / "checkpoints" / "last.pt").is_file()  # kept, as an early stop keeps it
        manifest = json.loads((job / "manifest.json").read_text())
        assert manifest["status"] == "pruned" and manifest["pruned_at_epoch"] == 2
        assert manifest["reason"].startswith("pruned at epoch 2: the median pruner found val_acc")
        final = json.loads((job / "metrics.json").read_text())["final"]
        assert final["pruned_at_epoch"] == 2 and final["epochs"] == 2
        # TensorBoard's HParams has no pruned status: the run ended as asked, a success.
        assert hparams_session(job)[1] == "STATUS_SUCCESS"
    for number in (0, 2, 3):
        assert rows[number]["status"] == "ok" and rows[number]["epochs"] == "3"
    assert "| pruned at epoch 2 |" in (sweep_dir / "summary.md").read_text()


def test_continuing_a_search_keeps_its_pruned_trials_pruned(pruned_search, tmp_path):
    sweep_dir, _ = pruned_search
    before = {p.name: (p / "manifest.json").read_text() for p in sweep_dir.glob("[0-9]*_*")}
    proc = run_cli(*SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert [t.state.name for t in study(sweep_dir).trials].count("PRUNED") == 3
    after = {p.name: (p / "manifest.json").read_text() for p in sweep_dir.glob("[0-9]*_*")}
    assert after == before  # no job ran again


def test_a_pruner_that_does_not_exist_is_one_line(tmp_path):
    proc = run_cli(*SEARCH, "hydra.sweeper.pruner.name=sometimes", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output
    assert "hydra.sweeper.pruner.name=sometimes is not a pruner; choose one of median" in output


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
