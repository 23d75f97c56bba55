"""The trackers beside TensorBoard (tracker=[...]): MLflow on a real SQLite store read back
with MLflow's own client, metrics.csv, Weights & Biases offline; one tracker run per job,
grouped by sweep, continued on resume; a tracker that cannot be used is one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cifar_exp.config import validate
from cifar_exp.errors import ConfigError, UserError
from cifar_exp.tracking import EPOCH_TAGS, FINAL_ONLY, STEP_TAGS, RunTracker
from helpers.cli import output_in_process, run_in_process
from helpers.events import load_events
from helpers.outputs import read_csv
from helpers.overrides import TINY

mlflow = pytest.importorskip("mlflow", reason='the MLflow tests need pip install -e ".[mlflow]"')
from mlflow.tracking import MlflowClient  # noqa: E402

from helpers.mlflow_store import (  # noqa: E402 (after the skip above)
    MLFLOW,
    mlflow_args,
    runs_of,
)


@pytest.mark.integration  # about 8 s: with the integration tests
def test_the_pictures_go_to_mlflow_as_image_artifacts(store, tmp_path):
    """With TensorBoard's pictures on, MLflow keeps the same pictures among the run's
    artifacts, one PNG per tag and epoch, and TensorBoard still has them."""
    args = [*TINY, "trainer.epochs=2", "trainer.log_images=true", "hydra.run.dir=run"]
    assert run_in_process(*args, *mlflow_args(store, "pictures"), cwd=tmp_path) == 0
    (run,) = runs_of(store, "pictures")
    client = MlflowClient(tracking_uri=store)

    def files(path: str) -> list[str]:
        found = client.list_artifacts(run.info.run_id, path)
        return [f.path for f in found if not f.is_dir] + [
            name for f in found if f.is_dir for name in files(f.path)
        ]

    pictures = set(files("pictures"))
    expected = {
        "pictures/visual/train_batch/00000.png",
        "pictures/visual/test_confusion/00001.png",
        "pictures/visual/test_confusion/00002.png",
        "pictures/visual/test_per_class_acc/00002.png",
        "pictures/visual/test_misclassified/00002.png",
    }
    assert pictures == expected, pictures
    local = Path(client.download_artifacts(run.info.run_id, "pictures", str(tmp_path / "got")))
    for name in expected:
        with (local.parent / name).open("rb") as png:
            assert png.read(8) == b"\x89PNG\r\n\x1a\n", name
    images = load_events(tmp_path / "run").Tags()["images"]
    assert set(images) == {name.split("/", 1)[1].rsplit("/", 1)[0] for name in expected}


def csv_points(run_dir: Path) -> dict[tuple[str, int], float]:
    rows = read_csv(run_dir / "metrics.csv")
    points = {}
    for row in rows:
        if row["tag"] not in STEP_TAGS:
            key = (row["tag"], int(row["epoch"]))
            assert key not in points, f"{key} twice"
            points[key] = float(row["value"])
    return points


def points_of_metrics_json(run_dir: Path) -> dict[tuple[str, int], float]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    points = {
        (EPOCH_TAGS[k], e["epoch"]): v
        for e in metrics["epochs"]
        for k, v in e.items()
        if k != "epoch"
    }
    final = metrics["final"]  # what is scored once, at the last epoch
    points |= {
        (EPOCH_TAGS[k], final["epochs"]): v for k, v in final.items() if k.endswith(FINAL_ONLY)
    }
    return points


def test_a_metrics_csv_row_a_kill_cut_short_is_dropped_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "trainer.epochs=2", "tracker=[csv]", f"hydra.run.dir={run_dir}"]
    assert run_in_process(*args, cwd=tmp_path) == 0
    before = points_of_metrics_json(run_dir)  # its end's scores at epoch 2 stay
    path = run_dir / "metrics.csv"
    text = path.read_text()
    last = text.splitlines()[-1]  # a per-epoch row of epoch 2, cut inside its value
    torn_tag = last.split(",")[0]
    path.write_text(text[: text.rindex(last) + len(last) - 25])
    code, printed = output_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path)
    assert code == 0 and f"{path}: dropped 1 torn row(s)" in printed

    expected = before | points_of_metrics_json(run_dir)
    del expected[(torn_tag, 2)]
    assert csv_points(run_dir) == expected


def test_metrics_csv_holds_the_points_of_metrics_json_once_across_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    # csv alone: no TensorBoard event files either.
    args = [*TINY, "trainer.epochs=2", "tracker=[csv]", f"hydra.run.dir={run_dir}"]
    assert run_in_process(*args, cwd=tmp_path) == 0
    assert not list(run_dir.glob("events.out.tfevents.*"))
    before = points_of_metrics_json(run_dir)  # its end's scores at epoch 2 stay
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=3", cwd=tmp_path) == 0

    assert csv_points(run_dir) == before | points_of_metrics_json(run_dir)
    rows = read_csv(run_dir / "metrics.csv")
    assert list(rows[0]) == ["tag", "step", "epoch", "value", "wall_time"]
    steps = [int(r["step"]) for r in rows if r["tag"] == "train_step/loss"]
    assert steps == sorted(set(steps)) and steps[-1] == 3 * 8
    epoch_steps = {int(r["epoch"]): int(r["step"]) for r in rows if r["tag"] == "train/loss"}
    assert epoch_steps == {1: 8, 2: 16, 3: 24}


def test_the_tracker_group_takes_a_list_and_checks_its_values(compose):
    assert OmegaConf.to_container(compose().tracker) == {
        "tensorboard": {},
        "csv": None,
        "mlflow": None,
        "wandb": None,
    }
    chosen = compose(["tracker=[csv,mlflow]", "tracker.mlflow.experiment=e"]).tracker
    assert chosen.tensorboard is None and chosen.csv == {} and chosen.mlflow.experiment == "e"
    with pytest.raises(ConfigError, match=r"^tracker.wandb.mode must be one of \['offline'"):
        validate(compose(["tracker=[wandb]", "tracker.wandb.mode=sometimes"]))


def test_a_tracker_failing_mid_run_warns_once_and_the_others_go_on(store, tmp_path, caplog):
    trackers = {"tensorboard": {}, "mlflow": {"tracking_uri": store, "experiment": "failing"}}
    tracker = RunTracker(tmp_path, {"model": "lenet5"}, trackers=trackers)
    tracker.start({"optimizer.lr": 0.1}, {"overrides": "optimizer.lr=0.1"})
    tracker.log_epoch(1, {"train_loss": 2.0}, step=8)
    MlflowClient(tracking_uri=store).delete_run(tracker.run_ids["mlflow"])  # logging now fails
    with caplog.at_level(logging.WARNING):
        for epoch in (2, 3):
            tracker.log_epoch(epoch, {"train_loss": 1.0 / epoch}, step=8 * epoch)
    (warning,) = [
        r.getMessage() for r in caplog.records if "tracker.mlflow failed" in r.getMessage()
    ]
    assert "metrics.json keeps every value" in warning
    tracker.finish({"epochs": 3, "test_acc": 0.5, "test_loss": 1.0})
    assert [e["epoch"] for e in json.loads((tmp_path / "metrics.json").read_text())["epochs"]] == [
        1,
        2,
        3,
    ]


def test_a_tracker_that_cannot_be_used_is_one_line_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    uri = f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}"  # under a file: cannot be created
    code, output = output_in_process(
        *TINY, MLFLOW, f"tracker.mlflow.tracking_uri={uri}", cwd=tmp_path
    )
    out = output
    assert code == 1, out[-3000:]
    (line,) = [x for x in out.splitlines() if "tracker.mlflow cannot use the tracking store" in x]
    assert uri in line and "fix tracker.mlflow.tracking_uri=" in line
    assert "Traceback" not in out and "epoch 1/1" not in out
    # A URI MLflow has no store for: the same line, from the same place.
    with pytest.raises(UserError, match=r"^tracker.mlflow cannot use the tracking store nosuch:"):
        RunTracker(tmp_path, {}, trackers={"mlflow": {"tracking_uri": "nosuch://x"}})
