"""Resume, interruption and failures as users meet them: real processes for signals and exit
messages, the same entrypoint in-process for runs that are only looked at."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.records.commands import override, run_command
from helpers.cli import output, run_cli, start_run, wait_for
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.interrupt import sigkill_when
from helpers.outputs import manifest
from helpers.overrides import TINY
from helpers.paths import REPO
from helpers.runs import copy_of, trained

# 32 steps per epoch: long enough to be interrupted in the middle of one.
LONG = [*TINY, "dataset.train_size=1024", "trainer.epochs=4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the interrupted ones must match."""
    return trained(tmp_path_factory.mktemp("reference"), *LONG)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run; tests work on copies of it."""
    return trained(tmp_path_factory.mktemp("finished"), *TINY, "trainer.epochs=2")


def test_sigkill_mid_epoch_then_resume_ends_bitwise_like_the_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(*LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    wait_for(last.exists, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert manifest(run_dir)["status"] == "running"  # killed: nobody could write "ended"
    assert load_checkpoint(last)["progress"]["epoch"] < 4  # intact, and the run was unfinished

    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(reference, run_dir)
    assert_same_tensorboard(reference, run_dir)
    info = manifest(run_dir)
    assert info["status"] == "ok" and info["resumed_from"] == str(last)
    assert [a["status"] for a in info["previous_attempts"]] == ["running"]


@pytest.mark.slow
def test_sigint_saves_says_how_to_resume_and_the_resumed_run_matches(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_run(*LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for((run_dir / "checkpoints" / "last.pt").exists, proc)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert f"python -m cifar_exp.run resume={run_dir}" in out
    assert "Traceback" not in out
    assert manifest(run_dir)["status"] == "interrupted"

    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(reference, run_dir)
    assert_same_tensorboard(reference, run_dir)


@pytest.mark.slow
def test_sigterm_stops_a_sweep_job_with_a_checkpoint_it_resumes_from(reference, tmp_path):
    sweep = tmp_path / "sweep"
    job = sweep / "0_trainer.seed=0"
    proc = start_run("-m", *LONG, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for((job / "checkpoints" / "last.pt").exists, proc)
    proc.terminate()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert f"Continue with: {run_command([override('resume', job)])}" in out
    assert manifest(job)["status"] == "interrupted"
    assert not list(sweep.glob("1_*"))  # the sweep stopped there

    resumed = run_cli(override("resume", job), cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(reference, job)


def test_disk_full_at_a_checkpoint_write_is_one_message_and_keeps_the_old_one(finished, tmp_path):
    """A real failing write: a file size limit (RLIMIT_FSIZE) below a checkpoint's size."""
    run_dir = copy_of(finished, tmp_path)
    last, best = (run_dir / "checkpoints" / name for name in ("last.pt", "best.pt"))
    old = last.read_bytes(), best.read_bytes()

    # Below a checkpoint (~770 KB), above the event file, pictures included (~250 KB).
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))

    proc = subprocess.run(
        [sys.executable, "-m", "cifar_exp.run", f"resume={run_dir}", "trainer.epochs=3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    # best.pt first when the epoch improved (checkpoint.py says why), else last.pt.
    failed = [
        f"could not write {p} (the previous one is intact): File too large" in output
        for p in (best, last)
    ]
    assert any(failed), output[-3000:]
    assert "Traceback" not in output
    assert (last.read_bytes(), best.read_bytes()) == old
    assert not list(last.parent.glob(".tmp-*"))
    info = manifest(run_dir)
    assert info["status"] == "failed" and "could not write" in info["reason"]


# The last commit before the package was grouped into folders (training/, records/, ...).
BEFORE_REGROUPING = "bf62928"


def test_a_run_stopped_under_the_code_before_the_regrouping_resumes_here(reference, tmp_path):
    """Checkpoints hold tensors and plain values, no module paths: a run that the code of
    BEFORE_REGROUPING trained for 2 of its 4 epochs resumes with this code and ends bitwise
    like the uninterrupted run."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", BEFORE_REGROUPING, "src"],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.skip(f"{BEFORE_REGROUPING} is not in this clone's history (a shallow clone?)")
    old = tmp_path / "old"
    old.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    run_dir = tmp_path / "run"
    first = subprocess.run(
        [sys.executable, "-m", "cifar_exp.run", *LONG, f"hydra.run.dir={run_dir}"]
        + ["trainer.epochs=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(old / "src")},
    )
    assert first.returncode == 0, output(first)[-3000:]
    assert (old / "src" / "cifar_exp" / "build.py").is_file()  # the flat layout it ran
    resumed = run_cli(f"resume={run_dir}", "trainer.epochs=4", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert_same_run(reference, run_dir)


# A large test split scored once at the end (a validation split is scored every epoch): the
# moment between the last checkpoint and the recorded end lasts seconds.
ENDS_SLOWLY = [*TINY, "trainer.epochs=2", "dataset.val_size=64", "dataset.test_size=30000"]


def test_a_run_killed_after_its_last_checkpoint_finishes_when_resumed(tmp_path):
    """SIGKILLed once last.pt holds its last epoch but before it recorded its end: resume=
    does what was left (the final test score, metrics.json, the manifest) and ends like the
    run that was not killed."""
    reference = trained(tmp_path / "reference", *ENDS_SLOWLY)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.pt"

    def last_epoch_saved() -> bool:
        return last.is_file() and load_checkpoint(last)["progress"]["epoch"] == 2

    proc = start_run(*ENDS_SLOWLY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    sigkill_when(proc, last_epoch_saved)
    assert manifest(run_dir)["status"] == "running"
    assert json.loads((run_dir / "metrics.json").read_text())["final"] is None

    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, output(resumed)[-3000:]
    assert "final test accuracy" in resumed.stdout
    assert_same_run(reference, run_dir)
    assert manifest(run_dir)["status"] == "ok"
    again = run_cli(f"resume={run_dir}", cwd=tmp_path)  # now it is finished
    assert again.returncode == 1 and "already finished its 2 epochs" in output(again)
