"""SIGINT and SIGTERM at every moment of a run (signals.py), with real processes and real
signals, from a folder whose path has a space and a non-ASCII letter: each ends with the one
documented line, the manifest `interrupted`, exit 130/143, every checkpoint left whole, no
point twice in TensorBoard; the command the line prints runs as printed.

The moments run three at a time (each is a process of a few seconds, mostly imports)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.records.commands import override
from helpers.cli import printed_command, run_in_process, run_printed
from helpers.events import tensorboard_points
from helpers.overrides import TINY
from helpers.paths import REPO

# 64 steps an epoch, three epochs: about two seconds of training, so the printed command that
# continues a run ends soon.
SHORT = [*TINY, "dataset.train_size=2048", "trainer.epochs=3"]
# Checkpoints of ~35 MB (ResNet-18 at width 32 with Adam's moments), one step an epoch: a
# checkpoint write lasts long enough to be caught. Moments without a printed command to run
# plan more epochs than they reach, so that a late signal still lands mid-run.
BIG_CHECKPOINTS = [
    *SHORT,
    "trainer.epochs=6",
    "model=resnet18",
    "model.width=32",
    "trainer.limit_train_batches=1",
    "trainer.limit_eval_batches=1",
]
# One training step an epoch and 16384 test images: an epoch is mostly its evaluation.
LONG_EVALUATION = [
    *SHORT,
    "trainer.epochs=5",
    "dataset.test_size=16384",
    "trainer.limit_train_batches=1",
]
PAUSE = "+hydra.callbacks.pause._target_=helpers.pause_callback.Pause"
INT, TERM = signal.SIGINT, signal.SIGTERM
STOP_LINES = ("Continue with: ", "Start it again with: ")


def last_pt(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.pt"


def writing_a_checkpoint_after_the_first(run_dir: Path) -> bool:
    return last_pt(run_dir).exists() and any((run_dir / "checkpoints").glob(".tmp-*"))


@dataclass
class Moment:
    name: str
    args: list[str]
    signals: list[tuple[int, float]]  # (signal, seconds to wait after sending it)
    marker: str | None = None  # a line of output that marks the moment
    ready: Callable[[Path], bool] | None = None  # or a condition on the run folder
    resumes: bool = False  # the run is a resume of a finished one-epoch run
    rerun: bool = False  # run the printed command, which must then finish the run
    expect: tuple[str, ...] = ()  # words the stop's line has
    output: str = field(default="", init=False)
    returncode: int | None = field(default=None, init=False)


MOMENTS = [
    Moment(
        "while Hydra sets the run folder up (a signal waits)",
        [*SHORT, PAUSE, "+hydra.callbacks.pause.at=on_run_start"],
        [(INT, 0)],
        marker="paused at on_run_start",
        rerun=True,
        expect=("before training started", "no checkpoint was written yet", "Start it again"),
    ),
    Moment(
        "before the first step (building the trainer)",
        [*SHORT, "trainer.epochs=1000000"],
        [(INT, 0)],
        marker="batch 32 (global)",
    ),
    Moment(
        "twice 10 ms apart, before the first step",
        [*SHORT, "trainer.epochs=1000000"],
        [(INT, 0.01), (INT, 0)],
        marker="batch 32 (global)",
    ),
    Moment(
        "mid-step",
        SHORT,
        [(INT, 0)],
        ready=lambda run_dir: last_pt(run_dir).exists(),
        rerun=True,
        expect=("stopped by SIGINT at ", "saved", "Continue with"),
    ),
    Moment(
        "twice 10 ms apart, mid-step",
        [*SHORT, "trainer.epochs=1000000"],
        [(INT, 0.01), (INT, 0)],
        ready=lambda run_dir: last_pt(run_dir).exists(),
    ),
    Moment(
        "SIGTERM twice 20 ms apart",
        [*SHORT, "trainer.epochs=1000000"],
        [(TERM, 0.02), (TERM, 0)],
        ready=lambda run_dir: last_pt(run_dir).exists(),
    ),
    Moment(
        "mid-evaluation",
        LONG_EVALUATION,
        [(INT, 0)],
        marker="epoch 1/5",
        expect=("stopped by SIGINT at end of epoch", "saved"),
    ),
    Moment(
        "mid-checkpoint",
        BIG_CHECKPOINTS,
        [(INT, 0)],
        ready=writing_a_checkpoint_after_the_first,
        expect=("stopped by SIGINT", "saved"),
    ),
    Moment(
        "twice 5 ms apart, mid-checkpoint",
        BIG_CHECKPOINTS,
        [(INT, 0.005), (INT, 0)],
        ready=writing_a_checkpoint_after_the_first,
    ),
    Moment(
        "a resume, before it starts (SIGTERM)",
        ["trainer.epochs=3", PAUSE, "+hydra.callbacks.pause.at=on_job_start"],
        [(TERM, 0)],
        marker="paused at on_job_start",
        resumes=True,
        rerun=True,
        expect=("before training started", "last.pt is as it was", "trainer.epochs=3"),
    ),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run, for the moments that resume one."""
    folder = tmp_path_factory.mktemp("finished")
    assert run_in_process(*SHORT, "trainer.epochs=1", "hydra.run.dir=run", cwd=folder) == 0
    return folder / "run"


@pytest.fixture
def where(tmp_path, finished):
    """A launch folder with a space and a non-ASCII letter, holding a finished run."""
    folder = tmp_path / "dír sp ace"
    folder.mkdir()
    shutil.copytree(finished, folder / "finished")
    return folder


def pause_env(moment: Moment) -> dict[str, str]:
    """The environment that finds helpers.pause_callback (in tests/), for a run that pauses."""
    paths = [REPO / "tests", REPO / "src", os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(map(str, paths))} if PAUSE in moment.args else {}


def stop_at(moment: Moment, run_dir: Path, cwd: Path) -> None:
    """Start the run, send the moment's signals when it comes, wait for the end."""
    run = [override("resume" if moment.resumes else "hydra.run.dir", run_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *moment.args, *run],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **pause_env(moment)},
    )
    lines: list[str] = []
    marked = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if moment.marker and moment.marker in line:
                marked.set()

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 240
    while not (marked.is_set() if moment.marker else moment.ready(run_dir)):
        assert proc.poll() is None, f"{moment.name}: ended early: {''.join(lines)[-3000:]}"
        assert time.monotonic() < deadline, f"{moment.name}: never came"
        time.sleep(0.001)
    for signum, wait in moment.signals:
        proc.send_signal(signum)
        time.sleep(wait)
    proc.wait(timeout=240)
    reader.join()
    moment.returncode, moment.output = proc.returncode, "".join(lines)


def assert_documented_stop(moment: Moment, run_dir: Path) -> str:
    """The documented outcome; returns the printed command."""
    out, name = moment.output, moment.name
    first = moment.signals[0][0]
    assert moment.returncode == 128 + first, f"{name}: {out[-3000:]}"
    assert "Traceback" not in out and "Logging error" not in out, f"{name}: {out[-3000:]}"
    stops = [line for line in out.splitlines() if "[ERROR] - stopped" in line]
    assert len(stops) == 1, f"{name}: {out[-3000:]}"
    (line,) = stops
    assert any(label in line for label in STOP_LINES), f"{name}: {line}"
    for words in moment.expect:
        assert words in line, f"{name}: {words!r} not in {line}"
    info = json.loads((run_dir / "manifest.json").read_text())
    assert info["status"] == "interrupted", f"{name}: {info}"
    assert info["reason"] in line, f"{name}: {info['reason']}"
    checkpoints = run_dir / "checkpoints"
    assert not list(checkpoints.glob(".tmp-*")), f"{name}: a half-written file is left"
    for path in checkpoints.glob("*.pt"):
        load_checkpoint(path)  # whole
    for tag, points in tensorboard_points(run_dir).items():
        steps = [step for step, _ in points]
        assert steps == sorted(set(steps)), f"{name}: {tag}: {steps}"
    label = next(label for label in STOP_LINES if label in line)
    return printed_command(line, label)


def stop_and_continue(moments: list[Moment], where: Path) -> None:
    runs = {}
    for moment in moments:
        runs[moment.name] = where / f"run {MOMENTS.index(moment)}"
        if moment.resumes:
            shutil.copytree(where / "finished", runs[moment.name])
    with ThreadPoolExecutor(max_workers=3) as pool:
        for done in [pool.submit(stop_at, m, runs[m.name], where) for m in moments]:
            done.result()
    commands = {m.name: assert_documented_stop(m, runs[m.name]) for m in moments}

    def rerun(moment: Moment) -> subprocess.CompletedProcess:
        return run_printed(commands[moment.name], cwd=where, env=pause_env(moment))

    again = [m for m in moments if m.rerun]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(rerun, again))
    for moment, proc in zip(again, results, strict=True):
        assert proc.returncode == 0, f"{moment.name}: {(proc.stdout + proc.stderr)[-3000:]}"
        info = json.loads((runs[moment.name] / "manifest.json").read_text())
        assert info["status"] == "ok"
        assert "interrupted" in [a["status"] for a in info["previous_attempts"]]
        metrics = json.loads((runs[moment.name] / "metrics.json").read_text())
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]


# The three (a Ctrl-C before the first step, two SIGINTs 10 ms apart, two SIGTERMs
# 20 ms apart), a signal while Hydra sets the folder up and one mid-step, whose printed
# commands are run: about half a minute. All ten moments: `-m slow`.
FAST = [MOMENTS[i] for i in (0, 1, 4, 5, 3)]


def test_a_signal_at_any_moment_ends_as_documented_and_its_command_continues(where):
    stop_and_continue(FAST, where)


@pytest.mark.slow
def test_a_signal_at_each_of_ten_moments_ends_as_documented(where):
    stop_and_continue(MOMENTS, where)


CONSOLE_SCRIPT = str(Path(sys.executable).parent / "cifar-exp")


@pytest.mark.parametrize(
    ("program", "signum"),
    [([sys.executable, "-m", "cifar_exp.run"], INT), ([CONSOLE_SCRIPT], TERM)],
    ids=["python -m, SIGINT", "cifar-exp, SIGTERM"],
)
def test_a_signal_while_torch_is_imported_is_one_line(tmp_path, program, signum):
    proc = subprocess.Popen(
        [*program, *TINY, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while "libtorch" not in maps.read_text():  # inside `import torch`, seconds before Hydra
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signum)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 128 + signum, out
    name = signal.Signals(signum).name
    assert out == f"stopped at once by {name} before the run started; nothing was written\n"
    assert not (tmp_path / "run").exists()
