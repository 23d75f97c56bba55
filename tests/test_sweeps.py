"""Sweeps through the real entrypoint: job folders, summaries, failures, seeds, the report."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cifar_exp.records.naming import MAX_DIRNAME, job_dirname
from cifar_exp.sweeps.jobs import available_cpus, threads_per_job
from helpers.cli import output_in_process, run_in_process
from helpers.events import hparams_session, load_events
from helpers.outputs import final_metrics, job_dirs, manifest, read_csv
from helpers.overrides import TINY
from helpers.plugins import needs_plugin


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory) -> Path:
    """Six jobs to report on; Hydra's basic launcher runs them in-process."""
    sweep_dir = tmp_path_factory.mktemp("seeds") / "sweep"
    overrides = ["trainer.seed=0,1,2", "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep_dir}"]
    assert run_in_process("-m", *TINY, *overrides, cwd=sweep_dir.parent) == 0
    return sweep_dir


def sweep(tmp_path: Path, *overrides: str) -> tuple[Path, str]:
    """`python -m cifar_exp.run -m ...` into tmp_path/sweep, in process (Hydra's basic launcher
    runs the jobs one after the other here); the folder and what it printed."""
    sweep_dir = tmp_path / "sweep"
    code, output = output_in_process(
        "-m", *TINY, *overrides, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path
    )
    assert code == 0, output[-3000:]
    return sweep_dir, output


def test_seed_groups_report_mean_std_and_n(seed_sweep):
    groups = {g["overrides"]: g for g in read_csv(seed_sweep / "seeds.csv")}
    assert set(groups) == {"optimizer.lr=0.001", "optimizer.lr=0.003"}
    for name, group in groups.items():
        accs = [
            final_metrics(d)["test_acc"]
            for d in job_dirs(seed_sweep)
            if name in (d / ".hydra" / "overrides.yaml").read_text()
        ]
        assert len(accs) == 3
        assert int(group["n"]) == 3 and group["seeds"] == "0 1 2"
        assert float(group["test_acc_mean"]) == pytest.approx(statistics.fmean(accs))
        assert float(group["test_acc_std"]) == pytest.approx(statistics.stdev(accs))
    md = (seed_sweep / "summary.md").read_text()
    assert "By seed" in md and " ± " in md


def test_job_dirname_keeps_swept_keys_and_stays_short(monkeypatch):
    monkeypatch.setenv("CIFAR_EXP_SWEPT_KEYS", "model,dataset.root")
    overrides = ["trainer.epochs=3", "model=resnet", "dataset.root=/data/cifar"]
    assert job_dirname(4, overrides) == "4_model=resnet,dataset.root=-data-cifar"
    monkeypatch.delenv("CIFAR_EXP_SWEPT_KEYS")
    assert job_dirname(4, overrides).startswith("4_trainer.epochs=3,model=resnet")
    assert len(job_dirname(1, [f"k{i}=value" for i in range(50)])) == MAX_DIRNAME


def test_threads_per_job_keeps_jobs_times_threads_within_cores():
    cpus = available_cpus()
    assert threads_per_job({"n_jobs": 2}) == max(1, cpus // 2)
    assert threads_per_job({"n_jobs": -1}) == 1
    assert threads_per_job({"cpus_per_task": 3}) == 3
    assert threads_per_job({}) is None


def test_grid_sweep_names_jobs_writes_summary_and_hparams(tmp_path):
    sweep_dir, output = sweep(tmp_path, "model=lenet5,resnet", "optimizer.lr=1e-3,3e-3")

    names = [p.name for p in job_dirs(sweep_dir)]
    assert names == [
        "0_model=lenet5,optimizer.lr=0.001",
        "1_model=lenet5,optimizer.lr=0.003",
        "2_model=resnet,optimizer.lr=0.001",
        "3_model=resnet,optimizer.lr=0.003",
    ]
    rows = read_csv(sweep_dir / "summary.csv")
    assert len(rows) == 4
    accs = [float(r["test_acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    for row in rows:
        job_dir = sweep_dir / row["dir"]
        overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
        assert f"model={row['model']}" in overrides
        assert f"optimizer.lr={row['optimizer.lr']}" in overrides
        assert row["overrides"] == f"model={row['model']} optimizer.lr={row['optimizer.lr']}"
        assert row["status"] == "ok"
        final = final_metrics(job_dir)
        assert float(row["test_acc"]) == pytest.approx(final["test_acc"])
        assert float(row["best_test_acc"]) == pytest.approx(final["best_test_acc"])
        assert float(row["final_train_loss"]) == pytest.approx(final["train_loss"])
        assert int(row["epochs"]) == 1 and float(row["wall_s"]) > 0
        assert float(row["images_per_s"]) > 0

        hparams, _ = hparams_session(job_dir)
        assert hparams["model.name"] == row["model"]
        assert hparams["optimizer.lr"] == pytest.approx(float(row["optimizer.lr"]))
        # The model's size: the same numbers in the summary, HParams and the manifest.
        size = manifest(job_dir)["model"]
        assert int(row["params"]) == size["params"] == hparams["model.params"]
        assert int(row["flops"]) == size["flops"] == hparams["model.flops"] > 0
        final_test_acc = load_events(job_dir).Scalars("test/acc")[-1].value
        assert final_test_acc == pytest.approx(float(row["test_acc"]))

    md = (sweep_dir / "summary.md").read_text()
    assert "| model=resnet optimizer.lr=0.003 |" in md
    assert "Common overrides: debug=tiny" in md
    assert "| final train loss |" in md and "| params | FLOPs / image |" in md
    assert md.strip().splitlines()[-1] in output  # the table is printed too
    # No validation split: the summary says in one line that it ranks on the test set.
    (note,) = [line for line in md.splitlines() if "Ranked by test accuracy" in line]
    assert "selects on the test set; add dataset.val_size=5000" in note
    assert note in output


@pytest.mark.integration  # about 9 s: with the integration tests
def test_failing_jobs_are_recorded_and_the_others_finish(tmp_path):
    # lr=-1 cannot work, lr=1e4 diverges to a NaN loss, 8x8 images are too small for LeNet5.
    sweep_dir, output = sweep(
        tmp_path, "optimizer=sgd", "optimizer.lr=0.01,-1,1e4", "dataset.image_size=32,8"
    )
    rows = read_csv(sweep_dir / "summary.csv")
    status = {(r["optimizer.lr"], r["dataset.image_size"]): r["status"] for r in rows}
    too_small = "failed: RuntimeError: Calculated padded input size per channel"
    assert status[("0.01", "32")] == "ok"
    assert (
        status[("-1", "32")]
        == status[("-1", "8")]
        == ("failed: optimizer.lr must be > 0, got -1.0")
    )
    assert status[("10000.0", "32")].startswith("failed: the training loss became non-finite")
    assert status[("0.01", "8")].startswith(too_small)
    assert status[("10000.0", "8")].startswith(too_small)
    assert rows[0]["status"] == "ok" and rows[0]["test_acc"] != ""
    assert all(r["test_acc"] == "" for r in rows[1:])
    assert output.count("job failed, the sweep goes on") == 5
    # A bug-like error keeps its traceback in the job's log; a bad value is one line.
    logs = {r["status"][:30]: (sweep_dir / r["dir"] / "run.log").read_text() for r in rows[1:]}
    assert "Traceback" in logs[too_small[:30]]
    assert "Traceback" not in logs["failed: optimizer.lr must be >"]


def test_report_plots_every_job_and_prints_the_table(seed_sweep, tmp_path):
    import matplotlib.image

    out = tmp_path / "plot.png"
    code, output = output_in_process(
        str(seed_sweep), "--out", str(out), module="cifar_exp.report", cwd=tmp_path
    )
    assert code == 0, output[-3000:]
    height, width, _ = matplotlib.image.imread(out).shape
    assert width > 800 and height > 300
    assert "| job | overrides |" in output and "By seed" in output

    one_run = job_dirs(seed_sweep)[0]
    code, output = output_in_process(str(one_run), module="cifar_exp.report", cwd=tmp_path)
    assert code == 0, output[-3000:]
    assert (one_run / "report.png").stat().st_size > 0


def test_report_writes_the_summary_of_a_sweep_whose_driver_did_not(seed_sweep, tmp_path):
    """A sweep submitted without waiting for it (docs/sweeps.md): its summary comes from
    the job folders whenever the report is run."""
    copy = tmp_path / "sweep"
    shutil.copytree(seed_sweep, copy)
    for name in ("summary.csv", "summary.md", "seeds.csv"):
        (copy / name).unlink()
    code, output = output_in_process(str(copy), module="cifar_exp.report", cwd=tmp_path)
    assert code == 0, output[-3000:]
    assert len(read_csv(copy / "summary.csv")) == 6
    assert (copy / "seeds.csv").is_file()


def test_report_on_a_folder_without_runs_says_what_to_give(tmp_path):
    code, output = output_in_process(str(tmp_path), module="cifar_exp.report", cwd=tmp_path)
    assert code == 1
    assert f"no runs in {tmp_path}: give a run folder" in output
    assert "Traceback" not in output
    assert not (tmp_path / "report.png").exists()


@needs_plugin("optuna")
@pytest.mark.integration  # about 11 s: with the integration tests
def test_optuna_search_optimizes_validation_accuracy_and_goes_on_after_a_failed_trial(tmp_path):
    # The preset's own validation split (5000 images) out of 5256 synthetic training images;
    # the search space with lr narrowed to one value that works and one that fails.
    sweep_dir, output = sweep(
        tmp_path,
        "dataset.train_size=5256",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "optimizer.lr=choice(-1,0.003)",
    )
    rows = read_csv(sweep_dir / "summary.csv")
    statuses = [r["status"] for r in rows]
    assert len(rows) == 4 and "ok" in statuses
    assert "failed: optimizer.lr must be > 0, got -1.0" in statuses
    for name in (r["dir"] for r in rows):  # every trial is named by the searched keys
        assert "optimizer.lr=" in name and "trainer.batch_size=" in name
    ok = [r for r in rows if r["status"] == "ok"]
    trials = [final_metrics(sweep_dir / r["dir"]) for r in ok]
    # Each trial validated on the 5000 held-out images, and was tested.
    for row, final in zip(ok, trials, strict=True):
        assert float(row["val_acc"]) == pytest.approx(final["val_acc"])
        assert float(row["test_acc"]) == pytest.approx(final["test_acc"])
        assert "5000 val / 128 test images" in (sweep_dir / row["dir"] / "run.log").read_text()
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_params["optimizer.lr"] == 0.003
    assert best.best_value == pytest.approx(max(f["val_acc"] for f in trials))
    assert "sorted by val_acc" in output and "Ranked by test accuracy" not in output


def test_a_sweep_in_which_every_job_failed_exits_non_zero_with_one_line(tmp_path):
    sweep_dir = tmp_path / "sweep"
    code, output = output_in_process(
        "-m", *TINY, "optimizer.lr=-1,-2", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path
    )
    output = output
    assert code == 1, output[-3000:]
    assert "every job of the sweep failed (2 job(s)) (see the status column above)" in output
    assert "Traceback" not in output
    assert len(read_csv(sweep_dir / "summary.csv")) == 2  # the summary is still written
