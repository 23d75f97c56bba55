"""A study shared by several searches, on a real PostgreSQL server started by the test (and
on SQLite): searches at once from their own sweep folders, storage URLs that cannot work,
and a trial whose search was SIGKILLed reclaimed by another after the grace period."""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.interrupt import sigkill_when
from helpers.overrides import TINY
from helpers.plugins import needs_plugin
from helpers.postgres import free_port, postgres  # noqa: F401 (a fixture)

needs_optuna = needs_plugin("optuna")
pytestmark = needs_optuna

STUDY = "shared"


# Tiny trials: 256 training images, 64 of them held out for validation.
SEARCH = [
    "hparams_search=optuna",
    *TINY,
    "dataset.val_size=64",
    f"hydra.sweeper.study_name={STUDY}",
]


# Trials long enough to be killed while one trains (14 steps an epoch, 2 epochs).
LONG = ["dataset.train_size=512", "dataset.val_size=64", "trainer.epochs=2"]


# Heartbeats every second; a trial without one for 3 s is stale. A study of its own on the
# module's server.
STALE = "stale"


QUICK_HEARTBEAT = [
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
    f"hydra.sweeper.study_name={STALE}",
]


def search_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifar_exp.run", *SEARCH, *args]


def study_trials(storage: str, study: str = STUDY) -> list:
    import optuna

    return optuna.load_study(study_name=study, storage=storage).trials


def job_folders(*sweep_dirs: Path) -> dict[int, list[Path]]:
    """Trial number -> the job folders named by it, over all sweep folders."""
    found: dict[int, list[Path]] = {}
    for sweep_dir in sweep_dirs:
        for path in sweep_dir.glob("[0-9]*_*"):
            found.setdefault(int(path.name.split("_")[0]), []).append(path)
    return found


def test_two_searches_at_once_share_one_postgres_study(tmp_path, postgres):  # noqa: F811
    storage = postgres.url()
    sweeps = [tmp_path / "machine-a", tmp_path / "machine-b"]
    procs = [
        subprocess.Popen(
            search_command(
                "hydra.sweeper.n_trials=6",
                f"hydra.sweeper.storage={storage}",
                f"hydra.sweep.dir={d}",
            ),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for d in sweeps
    ]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]

    trials = study_trials(storage)
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in trials)
    folders = job_folders(*sweeps)
    assert sorted(folders) == list(range(6))
    assert all(len(paths) == 1 for paths in folders.values())  # each in one sweep folder
    for trial in trials:
        (folder,) = folders[trial.number]
        assert trial.user_attrs["sweep_dir"] == str(folder.parent)
        final = json.loads((folder / "metrics.json").read_text())["final"]
        assert trial.value == pytest.approx(final["val_acc"])
    for sweep_dir in sweeps:
        rows = (sweep_dir / "summary.csv").read_text().strip().splitlines()
        assert len(rows) == 1 + len(list(sweep_dir.glob("[0-9]*_*")))


def storage_refused(tmp_path: Path, storage: str, env: dict | None = None) -> str:
    """Run a search on `storage`; assert it ends 1 before any trial, return its output."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        *SEARCH,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    assert not list(sweep_dir.glob("[0-9]*_*"))  # no trial started
    (line,) = [line for line in output.splitlines() if "hydra.sweeper.storage=" in line]
    return line


def test_a_wrong_password_is_one_line_naming_the_storage(tmp_path, postgres):  # noqa: F811
    line = storage_refused(tmp_path, postgres.url(password="wrong"))
    assert f"hydra.sweeper.storage=postgresql://cifar:***@127.0.0.1:{postgres.port}" in line
    assert "the server refused the user or password" in line and "check both" in line
    assert "wrong" not in line


def kill_while_trial_trains(sweep_dir: Path, storage: str, number: int) -> None:
    """Start a search and SIGKILL it while trial `number` trains (it has a last.pt)."""
    proc = subprocess.Popen(
        search_command(
            *LONG,
            *QUICK_HEARTBEAT,
            "hydra.sweeper.n_trials=3",
            f"hydra.sweeper.storage={storage}",
            f"hydra.sweep.dir={sweep_dir}",
        ),
        cwd=sweep_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigkill_when(proc, lambda: list(sweep_dir.glob(f"{number}_*/checkpoints/last.pt")))


def reclaimed_by_another_search(tmp_path: Path, storage: str) -> None:
    """Search A is SIGKILLed while trial 1 trains; after the grace period search B, from
    its own folder, fails trial 1, runs its parameters again from A's last.pt, and the study
    ends with 3 completed trials."""
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    kill_while_trial_trains(first, storage, number=1)
    assert [t.state.name for t in study_trials(storage, STALE)] == ["COMPLETE", "RUNNING"]
    time.sleep(4)  # past the grace period: nothing beats for trial 1 any more

    proc = run_cli(
        *SEARCH,
        *LONG,
        *QUICK_HEARTBEAT,
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={second}",
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "trial 1 (run by" in output and "marked failed, its parameters run again" in output

    trials = study_trials(storage, STALE)
    assert [(t.number, t.state.name) for t in trials] == [
        (0, "COMPLETE"),
        (1, "FAIL"),
        (2, "COMPLETE"),
        (3, "COMPLETE"),
    ]
    assert trials[2].params == trials[1].params  # the stale trial's parameters, again
    assert trials[1].number in trials[2].system_attrs["retry_history"]
    (retry,) = second.glob("2_*")
    manifest = json.loads((retry / "manifest.json").read_text())
    assert manifest["resumed_from"].endswith("last.pt")  # from where A's trial 1 stopped
    assert manifest["status"] == "ok"
    assert len(json.loads((retry / "metrics.json").read_text())["epochs"]) == 2
    assert trials[2].value == pytest.approx(
        json.loads((retry / "metrics.json").read_text())["final"]["val_acc"]
    )
    assert sorted(job_folders(second)) == [2, 3] and sorted(job_folders(first)) == [0, 1]


def test_a_killed_searchs_trial_is_reclaimed_on_postgres(tmp_path, postgres):  # noqa: F811
    reclaimed_by_another_search(tmp_path, postgres.url())


def test_a_killed_searchs_trial_is_reclaimed_on_sqlite(tmp_path):
    reclaimed_by_another_search(tmp_path, f"sqlite:///{tmp_path / 'study.db'}")


@contextlib.contextmanager
def holding_the_ask_lock(storage: str, study: str) -> Iterator[None]:
    """Hold, from this process, the lock a search takes to count and ask for trials."""
    import sqlalchemy

    from cifar_exp.sweeps.search import asking_key

    url = sqlalchemy.engine.make_url(storage)
    if url.get_backend_name() == "sqlite":
        with open(f"{url.database}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield
        return
    engine = sqlalchemy.create_engine(storage)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": asking_key(study)})
        yield
    engine.dispose()  # closing the session releases its advisory lock


def search_waits_for_the_ask_lock(tmp_path: Path, storage: str) -> None:
    """While another holder has the study's ask lock, a search opens the study but asks for
    no trial; once it is released, the search asks and runs its one trial. (Without the lock
    two searches could both see room for the study's last trial and ask for one each.)"""
    import optuna

    study_name = "asking"
    optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    with holding_the_ask_lock(storage, study_name):
        proc = subprocess.Popen(
            search_command(
                "hydra.sweeper.n_trials=1",
                f"hydra.sweeper.study_name={study_name}",
                f"hydra.sweeper.storage={storage}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}",
            ),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Long enough for the search to start and open the study (a few seconds) and ask.
        time.sleep(20)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert study_trials(storage, study_name) == []
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output[-3000:]
    assert [t.state.name for t in study_trials(storage, study_name)] == ["COMPLETE"]


def test_a_search_asks_under_the_studys_lock_on_postgres(tmp_path, postgres):  # noqa: F811
    search_waits_for_the_ask_lock(tmp_path, postgres.url())


def test_a_search_asks_under_the_studys_lock_on_sqlite(tmp_path):
    search_waits_for_the_ask_lock(tmp_path, f"sqlite:///{tmp_path / 'study.db'}")


# A pruning search (tests/test_pruning.py): lr 1e-7 is hopeless, 3e-3 learns; the sampler's
# seed 0 draws good, hopeless, ... for the first trials, and the median pruner judges from
# epoch 2 on, once one trial finished.
PRUNING = [
    "dataset.train_size=512",
    "dataset.val_size=64",
    "trainer.epochs=3",
    "optimizer.lr=choice(1e-7,3e-3)",
    "optimizer.weight_decay=0",
    "trainer.batch_size=32",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.sampler.n_startup_trials=10",
    "hydra.sweeper.pruner.name=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=2",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
    "hydra.sweeper.study_name=pruning",
    "hydra.sweeper.n_trials=4",
]


def test_a_pruning_search_killed_on_one_machine_is_finished_by_another(tmp_path, postgres):  # noqa: F811
    """Machine A's search is SIGKILLed while hopeless trial 1 trains; machine B's search,
    after the grace period, fails trial 1, runs its parameters again from A's last.pt (the
    folder is reachable), prunes it at epoch 2, and fills the study up to n_trials=4 trials
    that count, each hopeless one pruned; B's report shows them and the study's plots."""
    storage = postgres.url()
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    common = [*SEARCH, *PRUNING, f"hydra.sweeper.storage={storage}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *common, f"hydra.sweep.dir={first}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sigkill_when(proc, lambda: list(first.glob("1_*/checkpoints/last.pt")))
    time.sleep(4)  # past the grace period

    finished = run_cli(*common, f"hydra.sweep.dir={second}", cwd=tmp_path)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-3000:]
    trials = study_trials(storage, "pruning")
    states = [t.state.name for t in trials]
    assert states[:3] == ["COMPLETE", "FAIL", "PRUNED"]  # trial 2 reran trial 1's parameters
    assert trials[2].params == trials[1].params == {"optimizer.lr": 1e-7}
    assert sorted(trials[2].intermediate_values) == [2]  # resumed after epoch 1, pruned at 2
    counting = [t for t in trials if t.number != 1]
    assert len(counting) == 4
    for trial in counting:
        hopeless = trial.params["optimizer.lr"] == 1e-7
        assert trial.state.name == ("PRUNED" if hopeless else "COMPLETE"), trial
    (retry,) = second.glob("2_*")
    manifest = json.loads((retry / "manifest.json").read_text())
    assert manifest["status"] == "pruned" and manifest["pruned_at_epoch"] == 2
    assert manifest["resumed_from"].endswith("last.pt")

    shown = run_cli(str(second), cwd=tmp_path, module="cifar_exp.report")
    assert shown.returncode == 0, (shown.stdout + shown.stderr)[-3000:]
    assert "pruned at epoch 2" in shown.stdout and "Study plots:" in shown.stdout
    assert (second / "report.png").is_file() and (second / "optuna-history.png").is_file()
    assert sorted(job_folders(second)) == [2, 3, 4] and sorted(job_folders(first)) == [0, 1]
