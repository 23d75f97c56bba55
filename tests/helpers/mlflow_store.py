"""What runs logged into an MLflow store (conftest.py's `store` fixture), read back with MLflow's
own client; the tests that import this skip without MLflow."""

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from cifar_exp.tracking import EPOCH_TAGS, FINAL_ONLY, TIMING_TAGS

MLFLOW = "tracker=[tensorboard,mlflow]"


def mlflow_args(store: str, experiment: str) -> list[str]:
    return [
        MLFLOW,
        f"tracker.mlflow.tracking_uri={store}",
        f"tracker.mlflow.experiment={experiment}",
    ]


def runs_of(store: str, experiment: str) -> list:
    client = MlflowClient(tracking_uri=store)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def history(store: str, run_id: str, tag: str) -> list[tuple[int, float]]:
    points = MlflowClient(tracking_uri=store).get_metric_history(run_id, tag)
    return sorted((m.step, m.value) for m in points)


def assert_epochs_as_in_metrics_json(store: str, run, run_dir: Path, timings: bool = True) -> None:
    """Every per-epoch value of metrics.json in the run, once per epoch, and nothing more."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = metrics["epochs"]
    final = metrics["final"] or {}
    for key, tag in EPOCH_TAGS.items():
        if tag in TIMING_TAGS and not timings:
            continue
        expected = [(e["epoch"], e[key]) for e in epochs if key in e]
        if key.endswith(FINAL_ONLY) and key in final:  # scored once, at the last epoch
            expected = [(final["epochs"], final[key])]
        assert history(store, run.info.run_id, tag) == expected, tag
