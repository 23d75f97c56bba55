"""`python -m cifar_exp.report` over several sweeps: one table and one plot, grouped by the keys
that differ, with mean ± std over seeds; its ranking metric; a clean terminal."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib.image
import pytest

from helpers.cli import run_cli, run_in_process
from helpers.outputs import final_metrics, read_csv
from helpers.overrides import TINY


def sweep(folder: Path, *overrides: str) -> Path:
    """A sweep to report on, with Hydra's basic launcher, which runs its jobs in-process."""
    args = ["-m", *TINY, *overrides, f"hydra.sweep.dir={folder}"]
    assert run_in_process(*args, cwd=folder.parent) == 0
    return folder


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory) -> Path:
    """Two sweeps of one study: the second adds a seed to lr=1e-3, typed another way."""
    root = tmp_path_factory.mktemp("sweeps")
    sweep(root / "first", "optimizer.lr=1e-3,3e-3", "trainer.seed=0")
    sweep(root / "second", "optimizer.lr=0.001", "trainer.seed=1")
    return root


def test_a_report_over_two_sweeps_groups_their_jobs_by_setting(two_sweeps, tmp_path):
    out = tmp_path / "both.png"
    proc = run_cli(
        str(two_sweeps / "first"),
        str(two_sweeps / "second"),
        "--out",
        str(out),
        module="cifar_exp.report",
        cwd=tmp_path,
        env={"MPLCONFIGDIR": str(tmp_path / "fresh-matplotlib")},  # builds its font cache
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A clean terminal: nothing on stderr (no font cache messages); the table says in one line
    # that it ranks on the test set.
    assert proc.stderr == ""
    (note,) = [line for line in proc.stdout.splitlines() if line.startswith("Ranked by test")]
    assert "add dataset.val_size=5000" in note

    rows = read_csv(tmp_path / "both.csv")
    assert sorted(r["dir"].split("/")[0] for r in rows) == ["first", "first", "second"]
    assert {r["optimizer.lr"] for r in rows} == {"0.001", "0.003"}
    groups = {g["overrides"]: g for g in read_csv(tmp_path / "both-seeds.csv")}
    assert set(groups) == {"optimizer.lr=0.001", "optimizer.lr=0.003"}
    assert (
        groups["optimizer.lr=0.001"]["n"] == "2" and groups["optimizer.lr=0.001"]["seeds"] == "0 1"
    )
    accs = [
        final_metrics(d)["test_acc"]
        for d in [*two_sweeps.glob("first/0_*"), *two_sweeps.glob("second/0_*")]
    ]
    assert float(groups["optimizer.lr=0.001"]["test_acc_mean"]) == pytest.approx(
        statistics.fmean(accs)
    )
    assert float(groups["optimizer.lr=0.001"]["test_acc_std"]) == pytest.approx(
        statistics.stdev(accs)
    )
    assert "By seed" in (tmp_path / "both.md").read_text() and "By seed" in proc.stdout
    height, width, _ = matplotlib.image.imread(out).shape
    assert width > 800 and height > 300

    # A quoted glob reads the same folders; the default output lands where the command runs.
    proc = run_cli(str(two_sweeps / "*"), module="cifar_exp.report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_csv(tmp_path / "report-seeds.csv") == read_csv(tmp_path / "both-seeds.csv")
    assert (tmp_path / "report.png").stat().st_size > 0


def test_runs_with_a_validation_split_are_ranked_by_it_without_a_warning(tmp_path):
    folder = sweep(tmp_path / "val", "optimizer.lr=1e-3,3e-3", "dataset.val_size=64")
    proc = run_cli(str(folder), module="cifar_exp.report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sorted by val_acc" in proc.stdout
    assert "Ranked by test" not in proc.stdout + proc.stderr
    vals = [float(r["val_acc"]) for r in read_csv(folder / "summary.csv")]
    assert vals == sorted(vals, reverse=True)


def test_bad_folders_are_one_message_and_write_nothing(two_sweeps, tmp_path):
    for args, message in [
        ([str(tmp_path / "nothing*")], f"{tmp_path / 'nothing*'} matches no folder"),
        ([str(two_sweeps / "first"), str(tmp_path)], f"no runs in {tmp_path}: give a run folder"),
    ]:
        proc = run_cli(*args, module="cifar_exp.report", cwd=tmp_path)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
        assert not list(tmp_path.glob("report*"))


def test_the_report_goes_where_help_says(two_sweeps, tmp_path):
    help_text = " ".join(run_cli("--help", module="cifar_exp.report", cwd=tmp_path).stdout.split())
    assert "One folder: report.png goes into that folder" in help_text
    several = "Several folders: they are only read; report.png, report.md and report.csv go"
    assert f"{several} into the folder the command runs in" in help_text

    files = {p: p.stat().st_mtime_ns for p in two_sweeps.rglob("*")}
    both = [str(two_sweeps / "first"), str(two_sweeps / "second")]
    proc = run_cli(*both, module="cifar_exp.report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in two_sweeps.rglob("*")} == files
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["report-seeds.csv", "report.csv", "report.md", "report.png"]
    assert proc.stdout.splitlines()[-1] == "Plot: report.png"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli(str(two_sweeps / "first"), module="cifar_exp.report", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = two_sweeps / "first" / "report.png"
    assert proc.stdout.splitlines()[-1] == f"Plot: {png}"
    assert png.stat().st_size > 0 and not list(elsewhere.iterdir())
