"""Resume, interruption and failures as users meet them: real processes for signals and exit
messages, the same entrypoint in-process for runs that are only looked at."""

import json
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from cifar_exp.checkpoint import load_checkpoint
from cifar_exp.commands import override, run_command
from cifar_exp.errors import UserError
from cifar_exp.resume import resume_config, saved_config
from helpers.cli import run_cli, run_in_process, start_run
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.events import hparams_session, tensorboard_points
from helpers.outputs import manifest
from helpers.overrides import TINY

# 32 steps per epoch: long enough to be interrupted in the middle of one.
LONG = [*TINY, "dataset.train_size=1024", "trainer.epochs=4"]


def wait_for(condition, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def output(proc):
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the interrupted ones must match."""
    folder = tmp_path_factory.mktemp("reference")
    assert run_in_process(*LONG, f"hydra.run.dir={folder / 'run'}", cwd=folder) == 0
    return folder / "run"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run; tests work on copies of it."""
    folder = tmp_path_factory.mktemp("finished")
    run_dir = folder / "run"
    assert run_in_process(*TINY, "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=folder) == 0
    return folder / "run"


def copy_of(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


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


def test_resume_with_more_epochs_extends_metrics_and_tensorboard(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["final"]["epochs"] == 3
    points = tensorboard_points(run_dir)
    assert [step for step, _ in points["test/acc"]] == [1, 2, 3]
    assert [step for step, _ in points["train_step/loss"]] == list(range(2, 25, 2))
    assert not [tag for tag in points if tag.startswith("final/")]
    # One HParams session, the resumed attempt's: its hyperparameters, ended as a success.
    hparams, status = hparams_session(run_dir)
    assert (hparams["trainer.epochs"], status) == (3, "STATUS_SUCCESS")
    assert not (run_dir / ".hydra" / "overrides.yaml").read_text().count("resume")
    assert len(list(tmp_path.glob("outputs"))) == 0  # no stray new run folder


def test_resume_moves_event_files_out_of_the_tensorboard_folder_earlier_versions_used(
    finished, tmp_path
):
    run_dir = copy_of(finished, tmp_path)
    (run_dir / "tensorboard").mkdir()
    for path in run_dir.glob("events.out.tfevents.*"):
        path.rename(run_dir / "tensorboard" / path.name)
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path) == 0
    assert not (run_dir / "tensorboard").exists()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert [step for step, _ in tensorboard_points(run_dir)["test/acc"]] == [1, 2, 3]


def test_refused_resumes_change_nothing(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for overrides, message in [
        (
            ["optimizer.lr=0.1"],
            "resume: optimizer.lr would change the experiment (the run has "
            "optimizer.lr=0.001, the override gives 0.1)",
        ),
        ([], "already finished its 2 epochs; to train longer add trainer.epochs=<more>"),
    ]:
        proc = run_cli(f"resume={run_dir}", *overrides, cwd=tmp_path)
        assert proc.returncode == 1 and message in output(proc), output(proc)[-2000:]
        assert "Traceback" not in output(proc)
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after.keys() - before.keys() == set()
    # run.log has the refusals' lines; .lock names the last process that held the folder.
    assert all(after[p] == before[p] for p in before if p.name not in ("run.log", ".lock"))


def test_resume_config_allows_harmless_changes_only(compose):
    run_cfg = compose(["dataset=synthetic", "scheduler=cosine"])
    saved = saved_config(OmegaConf.to_yaml(run_cfg, resolve=True), "x")

    def resume(*overrides, completed=1):
        requested = compose(["dataset=synthetic", "scheduler=cosine", *overrides])
        return resume_config(saved, requested, list(overrides), completed)

    assert resume("trainer.log_every_n_steps=7").trainer.log_every_n_steps == 7
    assert resume("dataset=synthetic").dataset == saved.dataset  # restating is no change
    assert resume("device=cpu").device.type == "cpu"
    with pytest.raises(UserError, match="trainer.epochs cannot change with scheduler=cosine"):
        resume("trainer.epochs=20")
    with pytest.raises(UserError, match="resume: model.name would change the experiment"):
        resume("model=resnet20")
    with pytest.raises(UserError, match="resume: trainer.batch_size would change"):
        resume("trainer.batch_size=64")
    with pytest.raises(UserError, match="trainer.epochs=1 but the run has already completed 3"):
        plain = saved_config(OmegaConf.to_yaml(compose(), resolve=True), "x")
        resume_config(plain, compose(["trainer.epochs=1"]), ["trainer.epochs=1"], 3)
    more = compose(["trainer.epochs=30"])
    assert resume_config(plain, more, ["trainer.epochs=30"], 3).trainer.epochs == 30
    ramped = ["trainer.ema_decay=0.5", "trainer.ema_ramp_pow=3"]
    saved = saved_config(OmegaConf.to_yaml(compose(ramped), resolve=True), "x")
    with pytest.raises(UserError, match="cannot change with trainer.ema_ramp_pow=3"):
        resume_config(saved, compose([*ramped, "trainer.epochs=30"]), ["trainer.epochs=30"], 3)


def test_a_finished_run_directory_is_never_overwritten(finished, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run_cli(*TINY, "model=resnet20", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{run_dir} already holds a run (manifest.json (status: ok))" in output(proc)
    assert f"resume={run_dir}" in output(proc)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_what_counts_as_a_run_worth_keeping(tmp_path):
    from cifar_exp.rundir import previous_run

    assert previous_run(tmp_path) is None
    (tmp_path / "manifest.json").write_text('{"status": "failed"}')
    assert previous_run(tmp_path) is None  # failed before its first epoch: nothing to keep
    (tmp_path / "manifest.json").write_text('{"status": "interrupted"}')
    (tmp_path / "checkpoints").mkdir()
    assert previous_run(tmp_path) is None  # stopped by a signal before its first checkpoint
    (tmp_path / "manifest.json").write_text('{"status": "failed"}')
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert previous_run(tmp_path) == "checkpoints"
    for status in ("ok", "running", "interrupted"):
        (tmp_path / "manifest.json").write_text(json.dumps({"status": status}))
        assert previous_run(tmp_path) == f"manifest.json (status: {status})"
    for torn in ('{"status": "ok"', "[1, 2]"):  # a torn write, a file edited by hand
        (tmp_path / "manifest.json").write_text(torn)
        assert previous_run(tmp_path) == "manifest.json (status: unreadable)"


def test_output_directory_that_cannot_be_written_is_refused_at_start(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_cli(*TINY, f"hydra.run.dir={tmp_path / 'a_file' / 'run'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"cannot write to the output directory {tmp_path / 'a_file' / 'run'}" in output(proc)
    assert "hydra.run.dir=..." in output(proc) and "Traceback" not in output(proc)


def test_disk_full_at_a_checkpoint_write_is_one_message_and_keeps_the_old_one(finished, tmp_path):
    """A real failing write: a file size limit (RLIMIT_FSIZE) below a checkpoint's size."""
    run_dir = copy_of(finished, tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    old = last.read_bytes()

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
    assert proc.returncode == 1, output(proc)[-3000:]
    assert f"could not write {last} (the previous one is intact): File too large" in output(proc)
    assert "Traceback" not in output(proc)
    assert last.read_bytes() == old
    assert not list(last.parent.glob(".tmp-*"))
    info = manifest(run_dir)
    assert info["status"] == "failed" and "could not write" in info["reason"]


def test_nonfinite_loss_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *TINY, "optimizer=sgd", "optimizer.lr=1e30", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "the training loss became non-finite (NaN or inf) at step 2 (epoch 1)" in output(proc)
    assert "no checkpoint was written yet" in output(proc)
    assert "Traceback" not in output(proc)
    info = manifest(run_dir)
    assert info["status"] == "failed" and "non-finite" in info["reason"]
    assert info["device"] == "cpu" and info["end_time"] and info["host"]
