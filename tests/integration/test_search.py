"""The Optuna search (hparams_search=optuna) on a study stored on disk: a search killed while
a trial trains continues to n_trials with the same command, keeping the finished trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.cli import run_cli
from helpers.compare import snapshot
from helpers.interrupt import sigkill_when
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

needs_optuna = needs_plugin("optuna")


# Trials of 32 steps an epoch, long enough to be killed while the second one trains.
SEARCH = [
    "hparams_search=optuna",
    *TINY,
    "dataset.train_size=1024",
    "dataset.val_size=128",  # the preset holds out 5000, more than this small set has
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "hydra.sweeper.n_trials=3",
]


def trials(sweep_dir: Path) -> list:
    import optuna

    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    return optuna.load_study(study_name="cifar_exp", storage=storage).trials


def kill_while_trial_trains(sweep_dir: Path, number: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *SEARCH, f"hydra.sweep.dir={sweep_dir}"],
        cwd=sweep_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigkill_when(proc, lambda: list(sweep_dir.glob(f"{number}_*/checkpoints/last.pt")))


@needs_optuna
def test_a_killed_search_continues_to_n_trials_keeping_the_finished_ones(tmp_path):
    sweep_dir = tmp_path / "sweep"
    kill_while_trial_trains(sweep_dir, number=1)
    before = trials(sweep_dir)
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]
    (first,) = sweep_dir.glob("0_*")
    kept = snapshot(first)

    proc = run_cli(*SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    after = trials(sweep_dir)
    assert [(t.number, t.state.name) for t in after] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "COMPLETE"),
    ]
    assert after[0].value == before[0].value and after[0].params == before[0].params
    assert after[1].params == before[1].params  # the interrupted trial ran again, as it was
    assert after[2].params != after[0].params  # new random numbers, not the first draws again
    assert snapshot(first) == kept
    (second,) = sweep_dir.glob("1_*")
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith("last.pt")
    final = json.loads((second / "metrics.json").read_text())["final"]
    assert after[1].value == pytest.approx(final["val_acc"])  # the search optimizes val
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_value == max(t.value for t in after)
    assert len(list(sweep_dir.glob("[0-9]*_*"))) == 3
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 4  # header + 3 trials


@needs_optuna
def test_a_finished_search_asked_for_more_trials_adds_them_after_its_own(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    args = [*SEARCH, "dataset.train_size=256", "trainer.epochs=1", f"hydra.sweep.dir={sweep_dir}"]
    assert run_cli(*args, "hydra.sweeper.n_trials=1", cwd=tmp_path).returncode == 0
    (first,) = sweep_dir.glob("0_*")
    kept = snapshot(first)
    proc = run_cli(*args, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "continuing study cifar_exp: 1 trial(s) kept" in proc.stdout + proc.stderr
    assert [t.number for t in trials(sweep_dir)] == [0, 1]
    assert snapshot(first) == kept and len(list(sweep_dir.glob("1_*"))) == 1

    # The report of a search draws its study too, beside report.png, and lists the plots.
    from cifar_exp.report import main as report

    assert report([str(sweep_dir)]) == 0
    (listed,) = [line for line in capsys.readouterr().out.splitlines() if "Study plots:" in line]
    for name in ("history", "importances", "parallel", "slice"):
        png = sweep_dir / f"optuna-{name}.png"
        assert str(png) in listed and png.read_bytes()[:4] == b"\x89PNG"


def test_without_a_current_optuna_the_search_says_what_to_install(tmp_path):
    # An `optuna` that cannot be imported, as on a machine without the sweeps extra.
    (tmp_path / "fake" / "optuna").mkdir(parents=True)
    (tmp_path / "fake" / "optuna" / "__init__.py").write_text("raise ImportError('no optuna')")
    pythonpath = f"{tmp_path / 'fake'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        *SEARCH, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env={"PYTHONPATH": pythonpath}
    )
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert (
        "hparams_search=optuna needs Optuna 3.0 or later (no optuna); install the sweeps" in output
    )
    assert "Traceback" not in output
    assert not list(sweep_dir.glob("[0-9]*"))  # no trial ran


@needs_optuna
@needs_plugin("hydra_plugins.hydra_joblib_launcher")
def test_an_asynchronous_search_keeps_every_worker_busy_without_batches(tmp_path):
    """Two workers, trials of 1 and 40 epochs (a seeded random sampler draws 1, 40, 1, 40):
    the short trial after the first long one starts while that one still trains, not after
    it as in a batch."""
    sweep_dir = tmp_path / "sweep"
    args = [
        *SEARCH,
        "dataset.train_size=512",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner.name=none",
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        "~hydra.sweeper.sampler.n_startup_trials",
        "trainer.epochs=choice(1,40)",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = run_cli(*args, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "asynchronous search: 2 workers, each starting a new trial the moment" in output
    assert [t.state.name for t in trials(sweep_dir)] == ["COMPLETE"] * 4
    assert sorted(p.name.split("_")[0] for p in sweep_dir.glob("[0-9]*_*")) == ["0", "1", "2", "3"]
    assert OmegaConf.load(sweep_dir / "optimization_results.yaml").mode == "async"
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 5  # header + 4 trials
    spans = {}
    for folder in sweep_dir.glob("[0-9]*_*"):
        manifest = json.loads((folder / "manifest.json").read_text())
        epochs = len(json.loads((folder / "metrics.json").read_text())["epochs"])
        spans[int(folder.name.split("_")[0])] = (
            epochs,
            manifest["start_time"],
            manifest["end_time"],
        )
    long = min(n for n in spans if spans[n][0] == 40)
    after = [n for n in spans if n > long and spans[n][0] == 1]
    assert after and all(spans[n][1] < spans[long][2] for n in after), spans

    # The basic launcher runs jobs one by one in the sweep's own process: no async there.
    proc = run_cli(
        *SEARCH, "hydra.sweeper.mode=async", f"hydra.sweep.dir={tmp_path / 'b'}", cwd=tmp_path
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert (
        "hydra.sweeper.mode=async needs a launcher that runs jobs side by side"
        in proc.stderr + proc.stdout
    )
