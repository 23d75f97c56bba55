"""Pruning a search's hopeless trials from inside their jobs, decided by a real study (no
mocked pruner): each job reports its per-epoch validation accuracy to its own trial through
the study's storage and stops at the epoch boundary where the pruner says so."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from helpers.cli import output_in_process, run_in_process
from helpers.events import hparams_session
from helpers.outputs import read_csv
from helpers.plugins import needs_plugin
from helpers.pruning_search import HOPELESS, SEARCH, study

pytestmark = needs_plugin("optuna")


@pytest.fixture(scope="module")
def pruned_search(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("pruning")
    sweep_dir = folder / "sweep"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert run_in_process(*SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=folder) == 0
    return sweep_dir, printed.getvalue()


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


def test_a_pruner_that_does_not_exist_is_one_line(tmp_path):
    code, output = output_in_process(*SEARCH, "hydra.sweeper.pruner.name=sometimes", cwd=tmp_path)
    output = output
    assert code == 1 and "Traceback" not in output
    assert "hydra.sweeper.pruner.name=sometimes is not a pruner; choose one of median" in output


def test_continuing_a_search_keeps_its_pruned_trials_pruned(pruned_search, tmp_path):
    sweep_dir, _ = pruned_search
    before = {p.name: (p / "manifest.json").read_text() for p in sweep_dir.glob("[0-9]*_*")}
    assert run_in_process(*SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path) == 0
    assert [t.state.name for t in study(sweep_dir).trials].count("PRUNED") == 3
    after = {p.name: (p / "manifest.json").read_text() for p in sweep_dir.glob("[0-9]*_*")}
    assert after == before  # no job ran again
