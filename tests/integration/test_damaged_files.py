"""Files the tool wrote and reads back, damaged as a kill, a full disk or a hand edit leaves
them: each is repaired where the data allows, or refused in one line naming the file and
what to do; never a traceback. (metrics.csv's torn rows: test_trackers.py; checkpoints:
test_checkpoint.py; manifests and locks: test_manifest.py, integration/test_one_writer.py.)"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from cifar_exp.sweeps.continuation import plan_job
from cifar_exp.sweeps.summary import find_jobs
from helpers.cli import output_in_process, run_in_process
from helpers.outputs import final_metrics, job_dirs
from helpers.overrides import TINY
from helpers.plugins import needs_plugin


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two finished jobs (Hydra's basic launcher, in this process)."""
    sweep_dir = tmp_path_factory.mktemp("damaged") / "sweep"
    args = ["-m", *TINY, "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep_dir}"]
    code, printed = output_in_process(*args, cwd=sweep_dir.parent)
    assert code == 0, printed[-3000:]
    return sweep_dir


def cut_in_half(path: Path) -> None:
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])


def test_a_half_written_metrics_json_marks_its_job_and_a_resume_writes_it_again(sweep, tmp_path):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    job = job_dirs(copy)[0]
    expected = final_metrics(job)
    cut_in_half(job / "metrics.json")

    code, printed = output_in_process(str(copy), cwd=tmp_path, module="cifar_exp.report")
    assert code == 0 and "Traceback" not in printed, printed[-2000:]
    (damaged,) = [j for j in find_jobs(copy) if j.status.startswith("damaged")]
    assert damaged.path == job
    assert damaged.status.startswith("damaged: metrics.json is damaged (")
    # A continued sweep resumes the job rather than keep it as finished without scores.
    assert plan_job(job, rerun_failed=False) == "resume"
    assert plan_job(job_dirs(copy)[1], rerun_failed=False) == "finished"

    # The status says how to repair it; that command does, from the job's last.pt.
    command = shlex.split(damaged.status.split("; ", 1)[1].split(" records it again")[0])
    assert command[:3] == ["python", "-m", "cifar_exp.run"]
    assert run_in_process(*command[3:], cwd=tmp_path) == 0
    repaired = final_metrics(job)
    assert repaired.keys() == expected.keys()
    assert repaired["test_acc"] == expected["test_acc"]
    assert all(j.ok for j in find_jobs(copy))


def test_a_damaged_override_record_marks_its_job_and_the_summary_goes_on(sweep, tmp_path):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    job = job_dirs(copy)[1]
    (job / ".hydra" / "overrides.yaml").write_text("- [optimizer.lr=0.003\n")
    jobs = find_jobs(copy)
    assert [j.num for j in jobs] == [0, 1]
    assert jobs[0].ok and jobs[1].status.startswith("damaged: .hydra/overrides.yaml is damaged")
    assert "remove the job's folder to run the job again" in jobs[1].status


@needs_plugin("optuna")
@pytest.mark.parametrize("damage", ["other bytes", "cut short"])
def test_a_damaged_study_database_is_one_line_naming_it(tmp_path, damage):
    sweep_dir = tmp_path / "sweep"
    args = ["hparams_search=optuna", *TINY, "dataset.val_size=64", f"hydra.sweep.dir={sweep_dir}"]
    study = sweep_dir / "optuna.db"
    if damage == "other bytes":
        sweep_dir.mkdir()
        study.write_bytes(bytes(range(256)) * 20)
    else:
        code, printed = output_in_process(*args, "hydra.sweeper.n_trials=1", cwd=tmp_path)
        assert code == 0, printed[-3000:]
        with study.open("r+b") as f:
            f.truncate(study.stat().st_size // 2)
    before = study.read_bytes()

    code, printed = output_in_process(*args, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    assert code == 1 and "Traceback" not in printed, printed[-3000:]
    (line,) = [line for line in printed.splitlines() if "is damaged" in line]
    assert f"{study} is damaged (" in line and "move it away to start the study afresh" in line
    assert study.read_bytes() == before  # nothing that was there is lost

    if damage == "cut short":  # the report still reports the jobs, without the study's plots
        code, printed = output_in_process(str(sweep_dir), cwd=tmp_path, module="cifar_exp.report")
        assert code == 0 and "Traceback" not in printed
        assert f"no study plots: {study} is damaged" in printed
        assert json.loads((job_dirs(sweep_dir)[0] / "metrics.json").read_text())["final"]
