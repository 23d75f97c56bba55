"""`python -m helpers.full_disk FOLDER`, run by tests/integration/test_trackers.py inside a
private mount namespace (`unshare -rm`): FOLDER becomes a small tmpfs, a run that logs to an
MLflow store there trains until its first checkpoint, the disk is filled, and the run fails;
then space is freed and the run resumed. What happened is printed as one JSON object."""

import json
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from cifar_exp.records.checkpoint import load_checkpoint
from helpers.overrides import TINY


def statuses(store: str) -> list[str]:
    client = MlflowClient(tracking_uri=store)
    return [
        run.info.status
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]


def main(folder: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "none", str(folder)], check=True)
    store, run_dir = f"sqlite:///{folder / 'mlflow.db'}", folder / "run"
    mlflow = ["tracker=[tensorboard,mlflow]", f"tracker.mlflow.tracking_uri={store}"]
    run = [sys.executable, "-m", "cifar_exp.run", *TINY, *mlflow]
    proc = subprocess.Popen(
        [*run, "trainer.epochs=100000", f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while not (run_dir / "checkpoints" / "last.pt").exists():
        time.sleep(0.01)
    filler = folder / "filler"
    with filler.open("wb") as f, open("/dev/zero", "rb") as zeros:
        try:
            while f.write(zeros.read(1 << 16)):
                f.flush()
        except OSError:
            pass
    failed = proc.communicate(timeout=120)[0]
    after_failure = statuses(store)

    filler.unlink()
    epoch = load_checkpoint(run_dir / "checkpoints" / "last.pt")["progress"]["epoch"]
    resumed = subprocess.run(
        [*run, f"resume={run_dir}", f"trainer.epochs={epoch + 1}"],
        capture_output=True,
        text=True,
    )
    result = {
        "code": proc.returncode,
        "output": failed,
        "after_failure": after_failure,
        "resumed_code": resumed.returncode,
        "resumed_output": resumed.stdout + resumed.stderr,
        "after_resume": statuses(store),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
