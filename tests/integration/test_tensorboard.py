"""The dashboard as its web page reads it: a real `tensorboard` server over a small sweep with
failing jobs, and one over a whole outputs/ folder (the sweep beside single runs), queried
through the HTTP data API its page uses."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_cli, run_in_process
from helpers.outputs import manifest
from helpers.overrides import TINY

# Two swept keys, named and numbered in this order. lr=1e4 diverges to a non-finite loss
# while training; lr=-1 is refused before training starts: both kinds of failure are listed.
SWEPT = ["trainer.batch_size=32,64", "optimizer.lr=0.01,1e4,-1"]
OK = ["0_trainer.batch_size=32,optimizer.lr=0.01", "3_trainer.batch_size=64,optimizer.lr=0.01"]
DIVERGED = [
    "1_trainer.batch_size=32,optimizer.lr=10000.0",
    "4_trainer.batch_size=64,optimizer.lr=10000.0",
]
REFUSED = ["2_trainer.batch_size=32,optimizer.lr=-1", "5_trainer.batch_size=64,optimizer.lr=-1"]
FAILED = DIVERGED + REFUSED
JOBS = sorted(OK + FAILED)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dashboard:
    """A tensorboard server of our own, read the way its page reads it."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}"]
        self.proc = subprocess.Popen(
            [*command, "--host=127.0.0.1", f"--port={port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def sessions(self, columns: list[dict[str, Any]] = ()) -> dict[str, dict[str, Any]]:
        """HParams' sessions by name, of any status, as the page queries them, each with its
        row's hparams and name (the Trial ID column)."""
        groups = self.post(
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": [
                    "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"
                ],
                "colParams": list(columns),
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]  # fmt: skip
        return {
            s["name"]: {**s, "hparams": g["hparams"], "trial_id": g["name"]}
            for g in groups
            for s in g["sessions"]
        }

    def wait_for_runs(self, count: int, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"tensorboard exited: {self.proc.stdout.read()[-3000:]}")
            try:
                runs = self.get("/data/runs")
                # Each run's data must be loaded too, not just its name found.
                if len(runs) >= count and len(self.sessions()) >= count:
                    return runs
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        pytest.fail(f"tensorboard did not list {count} runs within {timeout}s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def launch_folder(tmp_path_factory) -> tuple[Path, str]:
    """Where a user ran the sweep and two single runs (one refused before training), in the
    default folders under outputs/; and what the sweep printed."""
    tmp_path = tmp_path_factory.mktemp("dashboard")
    proc = run_cli("-m", *TINY, "trainer.epochs=2", "optimizer=sgd", *SWEPT, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert run_in_process(*TINY, cwd=tmp_path) == 0
    assert run_in_process(*TINY, "optimizer.lr=-1", cwd=tmp_path) == 1
    return tmp_path, proc.stdout


@pytest.fixture(scope="module")
def dashboard(launch_folder) -> Iterator[Dashboard]:
    """TensorBoard over the sweep's folder, as the sweep's last line says to start it."""
    tmp_path, printed = launch_folder
    (command,) = [line for line in printed.splitlines() if line.startswith("Compare: ")]
    board = serve(tmp_path / command.removeprefix("Compare: tensorboard --logdir "), len(JOBS))
    yield board
    board.stop()


@pytest.fixture(scope="module")
def whole_outputs(launch_folder) -> Iterator[Dashboard]:
    """`tensorboard --logdir outputs`: the sweep's jobs and the single run that trained."""
    board = serve(launch_folder[0] / "outputs", len(JOBS) + 1)
    yield board
    board.stop()


def serve(logdir: Path, runs: int) -> Dashboard:
    board = Dashboard(logdir)
    try:
        board.wait_for_runs(runs)
    except BaseException:
        board.stop()
        raise
    return board


def test_the_sweep_prints_its_own_logdir(dashboard, launch_folder):
    (sweep_dir,) = (launch_folder[0] / "outputs" / "multirun").glob("*/*")
    assert dashboard.logdir == sweep_dir


def test_hparams_rows_lead_with_their_folder_name_under_logdir_outputs(whole_outputs):
    """Below --logdir outputs every run's path starts with its date or multirun/<date>/...;
    HParams' Trial ID column (10em wide) would show only that. Each row leads with the name
    of its own folder instead, and names the folder it is in after it, so no two runs'
    rows merge whatever the --logdir."""
    runs = whole_outputs.get("/data/runs")
    sessions = whole_outputs.sessions()
    assert sorted(sessions) == sorted(runs)
    for name, session in sessions.items():
        folder = whole_outputs.logdir / name
        assert session["trial_id"] == f"{folder.name} ({folder.parent})"
    assert len({s["trial_id"][:10] for s in sessions.values()}) == len(runs)
    jobs = sorted(run for run in runs if run.startswith("multirun/"))
    assert [Path(job).name for job in jobs] == JOBS
    (single,) = set(runs) - set(jobs)
    assert re.fullmatch(r"20\d\d-\d\d-\d\d/\d\d-\d\d-\d\d_debug-tiny_\d+", single)
    # Failed jobs stay listed as failed; the single run refused before training (exit 1, no
    # curves; its manifest says failed) is in no list at all.
    status = {Path(name).name: s.get("status") for name, s in sessions.items()}
    assert {job: status[job] for job in FAILED} == dict.fromkeys(FAILED, "STATUS_FAILURE")
    (refused,) = whole_outputs.logdir.glob("*/*_debug-tiny+optimizer.lr--1_*")
    assert manifest(refused)["status"] == "failed"
    assert str(refused.relative_to(whole_outputs.logdir)) not in runs


def test_runs_are_named_by_their_folder_alone(dashboard):
    assert sorted(dashboard.get("/data/runs")) == JOBS
    enabled = {name for name, p in dashboard.get("/data/plugins_listing").items() if p["enabled"]}
    assert {"scalars", "hparams", "custom_scalars", "text"} <= enabled


def test_scalars_are_curves_without_one_point_final_charts(dashboard):
    tags = dashboard.get("/data/plugin/scalars/tags")
    assert set(OK) <= tags.keys()
    for run in OK:
        assert {"train/loss", "train/acc", "test/loss", "test/acc", "train/lr"} <= tags[run].keys()
        assert not [tag for tag in tags[run] if tag.startswith(("final/", "model/"))]
        points = dashboard.get(f"/data/plugin/scalars/scalars?run={run}&tag=test/acc")
        assert [step for _, step, _ in points] == [1, 2]


def test_hparams_columns_start_with_the_swept_keys_and_list_every_job(dashboard):
    experiment = dashboard.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment["hparamInfos"]
    names = [info["name"] for info in infos]
    assert names[:2] == ["optimizer.lr", "trainer.batch_size"]
    assert [info.get("differs", False) for info in infos[:3]] == [True, True, False]
    assert not {"resume", "trainer.num_threads", "trainer.progress_bar", "dataset.root"} & set(
        names
    )
    types = {info["name"]: info["type"] for info in infos}
    assert types["optimizer.lr"] == types["model.params"] == "DATA_TYPE_FLOAT64"
    assert types["optimizer.name"] == "DATA_TYPE_STRING"
    # Strings come with their values, so the page can filter on them.
    domains = {info["name"]: info.get("domainDiscrete") for info in infos}
    assert domains["optimizer.name"] == ["sgd"]
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"test/acc", "test/loss", "train/loss", "train/acc"} <= metrics

    # The page's own query: every hparam and metric as a column, string filters as shown.
    columns = [
        {"hparam": info["name"], **({"filterDiscrete": info["domainDiscrete"]}
                                    if "domainDiscrete" in info else {})}
        for info in infos
    ] + [{"metric": m["name"]} for m in experiment["metricInfos"]]  # fmt: skip
    sessions = dashboard.sessions(columns)
    assert sorted(sessions) == JOBS
    status = {name: s.get("status") for name, s in sessions.items()}
    assert status == dict.fromkeys(OK, "STATUS_SUCCESS") | dict.fromkeys(FAILED, "STATUS_FAILURE")
    # The metric values are the curves' last points (at the last epoch), not one-dot charts.
    values = {v["name"]["tag"]: v for v in sessions[OK[0]]["metricValues"]}
    assert values["test/acc"]["trainingStep"] == 2 and 0 <= values["test/acc"]["value"] <= 1
    assert sessions[OK[1]]["hparams"]["trainer.batch_size"] == 64
    assert sessions[REFUSED[0]]["hparams"]["optimizer.lr"] == -1  # listed with its values


def test_custom_scalars_put_train_and_evaluation_in_one_chart(dashboard):
    layout = dashboard.get("/data/plugin/custom_scalars/layout")
    (category,) = layout["category"]  # every run's identical layout, merged into one
    charts = {c["title"]: c["multiline"]["tag"] for c in category["chart"]}
    assert charts == {
        "loss": ["^(train|val|test)/loss$"],
        "accuracy": ["^(train|val|test)/acc$"],
    }


def test_text_tab_holds_config_overrides_command_and_commit(dashboard):
    tags = dashboard.get("/data/plugin/text/tags")
    assert sorted(tags) == sorted(OK + DIVERGED)  # all that started training
    for run in OK + DIVERGED:
        assert {t.split("/")[1] for t in tags[run]} == {
            "config",
            "overrides",
            "command",
            "git_commit",
        }
    run = DIVERGED[1]
    texts = {
        tag.split("/")[1]: dashboard.get(f"/data/plugin/text/text?run={run}&tag={tag}")[0]["text"]
        for tag in tags[run]
    }
    assert "batch_size: 64" in texts["config"] and "<pre>" in texts["config"]
    assert "optimizer.lr=10000.0" in texts["overrides"]
    assert "cifar_exp.run" in texts["command"]
