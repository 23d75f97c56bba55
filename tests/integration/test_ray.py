"""hydra/launcher=ray on a real Ray head of this machine (127.0.0.1), started here with
`ray start --head --block` and stopped by its own process id: a 2-job sweep and a 4-trial
asynchronous search, their folders, summaries and study; a dead address is one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.cli import run_cli
from helpers.overrides import TINY
from helpers.plugins import needs_plugin

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
SRC = Path(__file__).resolve().parents[2] / "src"
# Ray's token authentication follows ~/.ray/auth_token when the mode is not set (a local
# ray.init() writes one): the head and its drivers here say the same, explicitly.
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """The address of a Ray head with 2 CPUs, its workers importing this checkout."""
    port = free_port()
    env = {
        **os.environ,
        **NO_TOKEN,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    log = (tmp_path_factory.mktemp("ray") / "head.log").open("w")
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--object-store-memory=200000000",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not start (exit {head.poll()})")
                time.sleep(1)
        time.sleep(3)  # the raylet registers with the GCS just after it listens
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # ray start --block stops the processes it began
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


def test_a_sweep_runs_its_jobs_as_ray_tasks(ray_head, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        *TINY,
        "optimizer.lr=1e-3,3e-3",
        "hydra/launcher=ray",
        f"hydra.launcher.address={ray_head}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        env=NO_TOKEN,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = sorted(p.name for p in sweep_dir.glob("[0-9]_*"))
    assert jobs == ["0_optimizer.lr=0.001", "1_optimizer.lr=0.003"]
    assert all((sweep_dir / j / "metrics.json").is_file() for j in jobs)
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 3


@needs_plugin("optuna")
def test_an_asynchronous_search_runs_its_trials_on_ray(ray_head, tmp_path):
    import optuna

    sweep_dir = tmp_path / "search"
    proc = run_cli(
        "hparams_search=optuna",
        *TINY,
        "dataset.val_size=64",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=ray",
        f"hydra.launcher.address={ray_head}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        env=NO_TOKEN,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "asynchronous search: 2 workers" in output
    study = optuna.load_study(
        study_name="cifar_exp", storage=f"sqlite:///{sweep_dir / 'optuna.db'}"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert len(list(sweep_dir.glob("[0-9]_*"))) == 4
    assert OmegaConf.load(sweep_dir / "optimization_results.yaml").mode == "async"
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 5


def test_an_address_where_nothing_listens_is_one_line(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        *TINY,
        "optimizer.lr=1e-3,3e-3",
        "hydra/launcher=ray",
        f"hydra.launcher.address=127.0.0.1:{free_port()}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output[-3000:]
    assert "nothing listens at hydra.launcher.address=127.0.0.1:" in output
    assert not list(sweep_dir.glob("[0-9]_*"))


def test_without_an_address_a_local_ray_runs_the_sweep_and_goes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        *TINY,
        "optimizer.lr=1e-3,3e-3",
        "hydra/launcher=ray",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (sweep_dir / "summary.csv").read_text().count("\n") == 3
