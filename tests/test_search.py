"""The Optuna search (hparams_search=optuna) on a study stored on disk: a search killed while
a trial trains continues to n_trials with the same command, keeping the finished trials."""

from __future__ import annotations

from pathlib import Path

from helpers.cli import output_in_process
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

needs_optuna = needs_plugin("optuna")


def trials(sweep_dir: Path) -> list:
    import optuna

    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    return optuna.load_study(study_name="cifar_exp", storage=storage).trials


@needs_optuna
def test_search_space_from_params_and_command_line():
    from cifar_exp.sweeps.search import search_space

    space = search_space(
        [
            "optimizer.lr=tag(log, interval(1e-4, 0.3))",
            "trainer.batch_size=choice(32, 64)",
            "model.depth=range(1, 4)",
            "dataset=synthetic",
            "optimizer.lr=choice(0.1, 0.2)",  # the command line's, after the preset's
        ]
    )
    assert list(space) == ["trainer.batch_size", "model.depth", "dataset", "optimizer.lr"]
    assert space["trainer.batch_size"].choices == (32, 64)
    assert space["model.depth"].choices == (1, 2, 3)
    assert space["dataset"] == "synthetic"
    assert space["optimizer.lr"].choices == (0.1, 0.2)
    lr = search_space(["optimizer.lr=tag(log, interval(1e-4, 0.3))"])["optimizer.lr"]
    assert lr.log and (lr.low, lr.high) == (1e-4, 0.3)


@needs_optuna
def test_trials_launch_in_runs_of_consecutive_numbers():
    from cifar_exp.sweeps.search import TrialJob, consecutive

    jobs = [TrialJob(n, ()) for n in (3, 4, 7, 8, 9)]
    assert [[j.number for j in run] for run in consecutive(jobs)] == [[3, 4], [7, 8, 9]]


@needs_optuna
def test_a_search_whose_first_trials_fail_alike_before_training_stops_non_zero(tmp_path):
    # The preset holds out 5000 validation images; debug=tiny has 256 to train on.
    sweep_dir = tmp_path / "sweep"
    args = ["hparams_search=optuna", *TINY, "hydra.sweeper.n_trials=5"]
    code, output = output_in_process(*args, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    output = output
    assert code == 1, output[-3000:]
    reason = "dataset.val_size=5000 leaves no training images (the train split has 256)"
    (last,) = [line for line in output.splitlines() if "the sweep stopped" in line]
    assert "the first 2 trials failed before training with the same error" in last
    assert reason in last and "Traceback" not in output
    assert [t.state.name for t in trials(sweep_dir)] == ["FAIL", "FAIL"]  # not 5
    summary = (sweep_dir / "summary.md").read_text()
    # What the jobs were configured with, not "hold out no validation split".
    assert "configured to hold out a validation split (dataset.val_size=5000)" in summary
    assert "hold out no validation split" not in summary


@needs_optuna
def test_a_pruner_given_a_value_not_its_keys_is_one_line(tmp_path):
    args = ["hparams_search=optuna", *TINY, "hydra.sweeper.pruner=median"]
    code, output = output_in_process(*args, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert code == 1 and "Traceback" not in output, output[-3000:]
    assert (
        "hydra.sweeper.pruner=median sets the pruner's group of keys to a value; choose "
        "the pruner with hydra.sweeper.pruner.name=median" in output
    )
    assert not (tmp_path / "sweep").exists()
