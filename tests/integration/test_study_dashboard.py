"""optuna-dashboard, the live view of a search's study documented in docs/sweeps.md: a real
server on a real search's optuna.db, read over HTTP and in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.overrides import TINY
from helpers.postgres import free_port

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("optuna_dashboard") is None,
    reason="optuna-dashboard is not installed: pip install optuna-dashboard (part of [dev])",
)
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH; install it (Debian/Ubuntu: apt-get install chromium)",
)

TRIALS = 3


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A 3-trial search, and optuna-dashboard on its study file; yields the server's URL."""
    folder = tmp_path_factory.mktemp("search")
    sweep_dir = folder / "sweep"
    proc = run_cli(
        "hparams_search=optuna",
        *TINY,
        "dataset.val_size=64",
        f"hydra.sweeper.n_trials={TRIALS}",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=folder,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    port = free_port()
    # The command docs/sweeps.md gives, with a port of its own.
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            f"sqlite:///{sweep_dir / 'optuna.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get_json(f"{url}/api/studies")
                break
            except OSError:
                assert server.poll() is None, "optuna-dashboard ended"
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_dashboard_serves_the_searchs_trials(dashboard):
    (study,) = get_json(f"{dashboard}/api/studies")["study_summaries"]
    assert study["study_name"] == "cifar_exp" and study["directions"] == ["maximize"]
    trials = get_json(f"{dashboard}/api/studies/{study['study_id']}")["trials"]
    assert [t["number"] for t in trials] == list(range(TRIALS))
    assert all(t["state"] == "Complete" for t in trials)
    names = {p["name"] for t in trials for p in t["params"]}
    assert {"optimizer.lr", "optimizer.weight_decay", "trainer.batch_size"} <= names


@needs_chromium
def test_the_dashboard_page_lists_the_trials_in_headless_chromium(dashboard, tmp_path):
    page = f"{dashboard}/dashboard/studies/1/trials"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}"]
        + ["--virtual-time-budget=15000", "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "cifar_exp" in dom and "optimizer.lr" in dom
    assert f"Trial {TRIALS - 1}" in dom
