"""The dashboard screenshots of docs/outputs.md (and the README), regenerated in one command.

    python scripts/docs/dashboard_screenshots.py --root <CIFAR-10 image folder>   # real images
    python scripts/docs/dashboard_screenshots.py                                  # synthetic data

Trains a small sweep (LeNet5, two learning rates x two batch sizes, a few epochs; with
--root on --max-per-class images of each class of a train/ + test/ image folder), starts a
real TensorBoard on a free port of 127.0.0.1, captures its Time Series (scalars) and
HParams tabs, and the Images tab of the sweep's first job, with headless Chromium (Debian:
`apt-get install chromium`) and writes docs/dashboard_<tab>.png, each under 300 KB.

Then, as a newcomer's launch folder would hold beside the sweep, two single runs (the
defaults and model=resnet) and one refused before training (optimizer.lr=-1), and captures
what `tensorboard --logdir outputs` shows at 1600x1000: docs/first_sight_<tab>.png.
`--shots first-sight --suffix _before`, with PYTHONPATH pointing at an older checkout's
src/, captures the same for that code. `--shots mlflow` trains the sweep with
`tracker=[tensorboard,mlflow]` instead, starts `mlflow ui --backend-store-uri
sqlite:///outputs/mlflow.db` on 127.0.0.1 and captures its runs table (the sweep's parent
run with its four jobs nested under it): docs/mlflow_runs.png, and its comparison of the
four jobs (parallel coordinates of the swept keys, their parameters): docs/mlflow_compare.png.
Takes about three minutes on two CPU cores. The server and its helpers are also what
tests/test_dashboard_page.py uses.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

log = logging.getLogger("screenshots")

REPO = Path(__file__).resolve().parents[2]
# Screenshot name -> the page's URL fragment (which tab, and for Images which tags).
SWEEP_TABS = {"scalars": "timeseries", "hparams": "hparams"}
IMAGES_TAB = "images&tagFilter=" + urllib.parse.quote(
    "train_batch|confusion|misclassified|per_class"
)
MAX_BYTES = 300_000
WINDOW = (1400, 1000)
FIRST_SIGHT_WINDOW = (1600, 1000)
MLFLOW_WINDOW = (1800, 1000)  # room beside MLflow's assistant panel
# A newcomer's single runs beside the sweep; the last is refused before training.
SINGLE_RUNS = ([], ["model=resnet"], ["optimizer.lr=-1"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def tensorboard(logdir: Path, timeout: float = 60.0) -> Iterator[str]:
    """A real TensorBoard over `logdir` on 127.0.0.1; yields its URL once it lists runs,
    and stops the process it started on the way out."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
        + ["--host", "127.0.0.1", "--port", str(port), "--load_fast=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _lists_runs(url):
            if proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tensorboard listed no runs of {logdir} in {timeout:.0f}s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _lists_runs(url: str) -> bool:
    try:
        return bool(get_json(f"{url}/data/runs"))
    except OSError:  # not listening yet
        return False


def chromium(*args: str, profile: Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Headless Chromium with its own profile folder (two at once must not share one).
    The virtual time budget lets the page's scripts fetch and draw before the capture."""
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        + [f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def screenshot(url: str, path: Path, profile: Path, window: tuple[int, int] = WINDOW) -> None:
    chromium(f"--window-size={window[0]},{window[1]}", f"--screenshot={path}", url, profile=profile)


def dump_dom(url: str, profile: Path) -> str:
    return chromium("--dump-dom", url, profile=profile).stdout


def compress(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Rewrite a PNG with a 256-colour palette, halving its width until it fits max_bytes."""
    image = Image.open(path).convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=256).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes:
            break
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
    path.write_bytes(buffer.getvalue())


def data_overrides(folder: Path, root: Path | None, max_per_class: int) -> list[str]:
    if root is None:
        return ["dataset=synthetic", "dataset.train_size=2000", "dataset.test_size=500"]
    return [
        "dataset=imagefolder",
        f"dataset.root={root}",
        f"dataset.max_per_class={max_per_class}",
        f"dataset.cache_dir={folder / 'cache'}",
    ]


def train(folder: Path, overrides: list[str], epochs: int) -> subprocess.CompletedProcess:
    """python -m cifar_exp.run from `folder`, so the runs land in its outputs/ as a user's."""
    command = [sys.executable, "-m", "cifar_exp.run", *overrides, f"trainer.epochs={epochs}"]
    command += ["device=cpu", "trainer.progress_bar=false", "trainer.num_threads=1"]
    log.info("training: %s", " ".join(command[1:]))
    return subprocess.run(command, capture_output=True, text=True, cwd=folder)


def train_sweep(folder: Path, data: list[str], epochs: int) -> Path:
    swept = ["model=lenet5", "optimizer.lr=1e-3,3e-3", "trainer.batch_size=32,64"]
    proc = train(folder, ["-m", *data, *swept], epochs)
    if proc.returncode != 0:
        sys.exit(f"the sweep failed:\n{proc.stderr[-3000:]}")
    (sweep_dir,) = (folder / "outputs" / "multirun").glob("*/*")
    return sweep_dir


def train_single_runs(folder: Path, data: list[str], epochs: int) -> None:
    for extra in SINGLE_RUNS:
        proc = train(folder, [*data, *extra], epochs)
        if (proc.returncode != 0) != (extra is SINGLE_RUNS[-1]):
            sys.exit(f"{' '.join(extra)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="image folder (train/, test/); else synthetic")
    parser.add_argument("--max-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--shots", choices=["all", "first-sight", "mlflow"], default="all",
        help="first-sight: only what `tensorboard --logdir outputs` shows",
    )  # fmt: skip
    parser.add_argument("--suffix", default="", help="ends the first-sight file names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("chromium") is None:
        sys.exit("chromium is not on PATH; install it (Debian/Ubuntu: apt-get install chromium)")
    root = None if args.root is None else args.root.expanduser().absolute()
    if root is not None and not (root / "train").is_dir():
        sys.exit(f"no image folder at {root}; pass --root <folder with train/ and test/>")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = data_overrides(folder, root, args.max_per_class)
        if args.shots == "mlflow":
            capture_mlflow(folder, data, args.epochs, args.out)
            return
        sweep_dir = train_sweep(folder, data, args.epochs)
        if args.shots == "all":
            capture_sweep(sweep_dir, args.out, folder)
        train_single_runs(folder, data, args.epochs)
        with tensorboard(folder / "outputs") as url:
            for name, fragment in SWEEP_TABS.items():
                path = args.out / f"first_sight_{name}{args.suffix}.png"
                capture(f"{url}/#{fragment}", path, folder, FIRST_SIGHT_WINDOW)


def capture_sweep(sweep_dir: Path, out: Path, folder: Path) -> None:
    with tensorboard(sweep_dir) as url:
        for name, fragment in SWEEP_TABS.items():
            capture(f"{url}/#{fragment}", out / f"dashboard_{name}.png", folder, WINDOW)
    # One job's pictures: over the whole sweep the tab would repeat each for every job.
    with tensorboard(next(sweep_dir.glob("0_*"))) as url:
        path = out / "dashboard_images.png"
        capture(f"{url}/#{IMAGES_TAB}", path, folder, (WINDOW[0], 1250))


@contextmanager
def mlflow_ui(store: Path, timeout: float = 300.0) -> Iterator[str]:
    """`mlflow ui` over the SQLite store on a free port of 127.0.0.1; yields its URL once it
    answers, and stops the process group it started (the server and its workers)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store}"]
        # One worker: uvicorn's supervisor restarts workers slow to start on a loaded machine.
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{url}/health"):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow ui did not answer in {timeout:.0f}s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a worker still busy: the group goes at once
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def capture_mlflow(folder: Path, data: list[str], epochs: int, out: Path) -> None:
    """The sweep in MLflow's own UI, as `mlflow ui --backend-store-uri sqlite:///...` shows
    it to a user: the runs table (the sweep's parent run, its jobs folded under it)."""
    train_sweep(folder, [*data, "tracker=[tensorboard,mlflow]"], epochs)
    store = folder / "outputs" / "mlflow.db"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("cifar-exp")
    jobs = [
        run.info.run_id
        for run in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in run.data.tags
    ]
    with mlflow_ui(store) as url:
        page = f"{url}/#/experiments/{experiment.experiment_id}/runs"
        capture(page, out / "mlflow_runs.png", folder, MLFLOW_WINDOW)
        # The sweep's jobs side by side: the swept keys, their runs and parameters.
        ids = (jobs, [experiment.experiment_id])
        runs, experiments = (urllib.parse.quote(json.dumps(part)) for part in ids)
        page = f"{url}/#/compare-runs?runs={runs}&experiments={experiments}"
        capture(page, out / "mlflow_compare.png", folder, (MLFLOW_WINDOW[0], 1400))


def capture(url: str, path: Path, folder: Path, window: tuple[int, int]) -> None:
    screenshot(url, path, folder / "chromium", window)
    compress(path)
    log.info("wrote %s (%d KB)", path, path.stat().st_size // 1000)


if __name__ == "__main__":
    main()
