"""--dry-run: a sweep's jobs, a search's plan or a run's folder, printed; nothing run or written."""

from __future__ import annotations

from helpers.cli import output_in_process
from helpers.overrides import TINY
from helpers.plugins import needs_plugin


def test_a_grid_sweep_lists_its_jobs_and_writes_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    code, printed = output_in_process(
        "-m",
        *TINY,
        "optimizer.lr=1e-3,3e-3",
        "model=lenet5,resnet20",
        "--dry-run",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert code == 0, printed[-3000:]
    assert f"dry run: a sweep of 4 job(s) into {sweep_dir} (BasicLauncher):" in printed
    for name in ("0_optimizer.lr=0.001,model=lenet5", "3_optimizer.lr=0.003,model=resnet20"):
        assert f"\n  {name}\n" in printed
    assert "nothing ran and nothing was written" in printed
    assert list(tmp_path.iterdir()) == []


def test_a_single_run_names_its_folder_and_makes_none(tmp_path):
    code, printed = output_in_process(
        *TINY, "--dry-run", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path
    )
    assert code == 0 and f"dry run: one run into {tmp_path / 'r'} with debug=tiny" in printed
    assert list(tmp_path.iterdir()) == []


@needs_plugin("optuna")
def test_a_search_shows_its_plan_and_the_trials_its_study_holds_untouched(tmp_path):
    import optuna

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    study = optuna.create_study(study_name="cifar_exp", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    before = (sweep_dir / "optuna.db").read_bytes()
    code, printed = output_in_process(
        "hparams_search=optuna",
        *TINY,
        "trainer.epochs=choice(1,3)",
        "--dry-run",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert code == 0, printed[-3000:]
    assert (
        f"an Optuna search into {sweep_dir} (BasicLauncher): maximize over 20 trial(s), "
        "1 at a time (batch)" in printed
    )
    assert f"study cifar_exp in {storage}: 1 trial(s) already (1 complete)" in printed
    assert "sampler optuna.samplers.TPESampler(seed=0, n_startup_trials=5)" in printed
    assert "searched trainer.epochs: CategoricalDistribution(choices=(1, 3))" in printed
    assert "fixed in every trial: hparams_search=optuna debug=tiny" in printed
    assert (sweep_dir / "optuna.db").read_bytes() == before
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["optuna.db"]
