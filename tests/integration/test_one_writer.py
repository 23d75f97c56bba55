"""One writer per run folder (lock.py): a second process on a folder in use is refused before it
writes, naming the holder; the lock dies with its process. Real processes and real signals
for the command line; the lock itself against a small holder process."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cifar_exp.records import lock
from cifar_exp.records.commands import override
from helpers.cli import run_cli, run_in_process, start_run
from helpers.compare import snapshot
from helpers.events import tensorboard_points
from helpers.overrides import TINY
from helpers.paths import REPO

# A resumed tiny run that trains for seconds (8 steps an epoch): it still runs when a second
# process, started at the same moment, reaches the lock.
MORE = ("trainer.epochs=60", "trainer.epochs=40")


HOLD = "import sys, time; from cifar_exp.records.lock import hold; hold(__import__('pathlib').Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(60)"  # noqa: E501


FORKS = "import os, sys, time; from cifar_exp.records.lock import hold; hold(__import__('pathlib').Path(sys.argv[1]), 'x'); pid = os.fork(); pid or time.sleep(60); print(pid, flush=True); time.sleep(60)"  # noqa: E501
LEAVES = "import os, subprocess, sys; from cifar_exp.records.lock import hold, _held; hold(__import__('pathlib').Path(sys.argv[1]), 'x'); (fd,) = _held.values(); child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], pass_fds=(fd,)); print(child.pid, flush=True)"  # noqa: E501


def holder_process(folder, script=HOLD):
    """A small process that takes `folder`'s lock and runs `script`'s rest (HOLD: holds it
    until it is killed)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )


def test_a_forked_child_does_not_keep_the_lock_when_its_parent_is_killed(tmp_path):
    parent = holder_process(tmp_path, FORKS)
    child = int(parent.stdout.readline())
    try:
        assert lock.holder_of(tmp_path).pid == parent.pid
        parent.kill()
        parent.wait(timeout=30)
        assert lock.holder_of(tmp_path) is None  # at once, though the child still runs
        os.kill(child, 0)
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_process_the_holder_left_running_is_named_as_the_holder(tmp_path):
    parent = holder_process(tmp_path, LEAVES)
    child = int(parent.stdout.readline())
    try:
        parent.wait(timeout=30)  # it ended; the child it gave the lock's file to runs on
        holder = lock.holder_of(tmp_path)
        assert (holder.pid, holder.left_by) == (child, parent.pid)
        message = str(lock.FolderInUse(tmp_path, holder, "resume"))
        assert (
            f"in use by process {child} on host {socket.gethostname()}, left running by "
            f"process {parent.pid} ("
            in message
            and "which has ended" in message
        )
        assert f"kill -INT {child}" in message
    finally:
        os.kill(child, signal.SIGKILL)


def manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def no_step_twice(run_dir):
    for tag, points in tensorboard_points(run_dir).items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), f"{tag}: {steps}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    assert (
        run_in_process(*TINY, "trainer.epochs=2", f"hydra.run.dir={folder / 'run'}", cwd=folder)
        == 0
    )
    return folder / "run"


def test_a_held_folder_is_refused_naming_its_holder_and_freed_when_the_holder_dies(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = holder_process(folder)
    assert holder.stdout.readline() == "held\n"
    before = snapshot(folder)
    seen = lock.holder_of(folder)
    assert snapshot(folder) == before  # looking changes nothing, not even a time
    assert (seen.pid, seen.host) == (holder.pid, socket.gethostname())
    with pytest.raises(lock.FolderInUse) as refused:
        lock.hold(folder, "do this")
    message = str(refused.value)
    assert f"is in use by process {holder.pid} on host {socket.gethostname()}, since " in message
    assert f"kill -INT {holder.pid}" in message and message.endswith("then do this")
    holder.kill()  # SIGKILL: the kernel drops the lock with the process
    holder.wait()
    assert lock.holder_of(folder) is None
    lock.hold(folder, "do this")
    try:
        assert json.loads((folder / lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release(folder)


@pytest.mark.parametrize("first", MORE)
def test_two_resumes_at_once_one_runs_the_other_is_refused_naming_it(finished, tmp_path, first):
    """Both started at the same moment, each order once: exactly one trains."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    second = MORE[1 - MORE.index(first)]
    procs = [start_run(f"resume={run_dir}", epochs, cwd=tmp_path) for epochs in (first, second)]
    refused = winner = None
    deadline = time.monotonic() + 240
    while refused is None:
        assert time.monotonic() < deadline, "neither was refused"
        done = [p for p in procs if p.poll() is not None]
        if done:
            (refused,) = done
            (winner,) = [p for p in procs if p is not refused]
        time.sleep(0.02)
    out = refused.stdout.read()
    assert refused.returncode == 1, out[-3000:]
    (line,) = [x for x in out.splitlines() if "is in use by" in x]
    assert f"{run_dir} is in use by process {winner.pid} on host " in line
    assert "then run this command again" in line and "Traceback" not in out
    winner.send_signal(signal.SIGINT)
    won = winner.communicate(timeout=120)[0]
    assert winner.returncode == 130, won[-3000:]
    no_step_twice(run_dir)
    info = manifest(run_dir)
    assert info["status"] == "interrupted" and info["pid"] == winner.pid
    assert [a["status"] for a in info["previous_attempts"]] == ["ok"]  # the refused: no attempt


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(10))
@pytest.mark.parametrize("first", MORE)
def test_two_resumes_at_once_ten_times(finished, tmp_path, first, attempt):
    test_two_resumes_at_once_one_runs_the_other_is_refused_naming_it(finished, tmp_path, first)


def test_a_run_into_a_running_runs_folder_is_refused_and_a_kill_frees_it_for_resume(tmp_path):
    run_dir = tmp_path / "r sp ace"
    holder = start_run(*TINY, "trainer.epochs=100000", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert holder.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc = run_cli(*TINY, "model=resnet20", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert f"{run_dir} is in use by process {holder.pid} on host " in out
    assert "continue that run with: python -m cifar_exp.run 'resume=" in out
    assert "resnet20" not in (run_dir / ".hydra" / "overrides.yaml").read_text()  # not written
    holder.kill()  # SIGKILL mid-training: the lock goes with the process
    holder.communicate(timeout=60)

    resumed = start_run(f"resume={run_dir}", cwd=tmp_path)  # at once: no stale lock to wait for
    for line in resumed.stdout:
        if "epoch" in line and "train loss" in line:  # it trains: it holds the folder now
            break
    resumed.send_signal(signal.SIGINT)
    out = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 130, out[-3000:]
    info = manifest(run_dir)
    assert info["status"] == "interrupted" and info["pid"] == resumed.pid
    assert [a["status"] for a in info["previous_attempts"]] == ["running"]  # the killed one
    no_step_twice(run_dir)


def test_a_sweep_or_one_of_its_jobs_started_while_it_runs_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [
        "-m",
        *TINY,
        "trainer.epochs=100000",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    sweep = start_run(*args, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not list(sweep_dir.glob("0_*/checkpoints/last.pt")):
        assert sweep.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    (job,) = sweep_dir.glob("0_*")
    again, alone = start_run(*args, cwd=tmp_path), start_run(override("resume", job), cwd=tmp_path)
    for proc, folder in ((again, sweep_dir), (alone, job)):
        out = proc.communicate(timeout=240)[0]
        assert proc.returncode == 1, out[-3000:]
        assert f"{folder} is in use by process {sweep.pid} on host " in out, out[-3000:]
        assert "Traceback" not in out
    assert sweep.poll() is None  # still training, untouched
    sweep.kill()
    sweep.communicate(timeout=60)
    assert lock.holder_of(job) is None and lock.holder_of(sweep_dir) is None
