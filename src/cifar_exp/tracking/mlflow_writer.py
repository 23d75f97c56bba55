"""tracker=[...,mlflow]: the run in an MLflow tracking store, through MLflow's own client.

Where: tracker.mlflow.tracking_uri, else $MLFLOW_TRACKING_URI, else a SQLite store
outputs/mlflow.db in the launch folder (artifacts beside it, in outputs/mlartifacts/).
The experiment: tracker.mlflow.experiment, else "cifar-exp".

A single run is a top-level MLflow run; a sweep is one parent run (its id kept in the sweep
folder's mlflow_parent.json, so every job finds it, in whatever process or machine a
launcher runs it, and a continued sweep reopens it) with one nested run per job. The run's
id goes into its checkpoints and manifest: a resume, or a continued sweep, logs into the
same run. MLflow cannot delete a logged point, so a resumed attempt skips those the run
already has (the killed attempt logged them past its checkpoint; resume is exact, so they
are the values it would log again): no step appears twice.

Status: FINISHED, FAILED (the reason in the `failure_reason` tag), KILLED for an interruption.
The per-step points wait in memory and go with the epoch's in one call (one database write
per epoch). MLflow is imported here, only when the tracker is chosen: its import takes
seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifar_exp.errors import UserError
from cifar_exp.records.atomic import DamagedFile, read_json, write_json
from cifar_exp.tracking.tags import HParamValue

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "cifar-exp"
DEFAULT_STORE = Path("outputs") / "mlflow.db"  # relative to the launch folder
PARENT_RECORD = "mlflow_parent.json"  # in a sweep folder: tracking URI -> the parent run's id
_STATUS = {"ok": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
_BATCH = 1000  # MLflow's most metrics in one log_batch call


def picture_path(tag: str, step: int) -> str:
    """Where a picture goes among the run's artifacts: pictures/<tag>/<step>.png (a resumed
    attempt that draws it again replaces it)."""
    return f"pictures/{tag}/{step:05d}.png"


def tracking_uri(configured: str | None) -> str:
    """The store the run goes to: the config's, the environment's, or outputs/mlflow.db."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{DEFAULT_STORE.absolute()}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock(store: Path | None) -> Iterator[None]:
    """Jobs of a sweep running side by side (joblib, submitit) take turns opening a SQLite
    store: MLflow creates a new store's tables on first use, and two processes doing so at
    once fail ("table ... already exists")."""
    if store is None:
        yield
        return
    store.parent.mkdir(parents=True, exist_ok=True)
    with store.with_name(f".{store.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _unreachable(uri: str, err: BaseException) -> UserError:
    # SQLAlchemy's message goes on with the statement it ran: not what the user needs.
    detail = " ".join(str(err).split("[SQL:")[0].split())[:300]
    return UserError(
        f"tracker.mlflow cannot use the tracking store {uri} ({type(err).__name__}: {detail}); "
        "fix tracker.mlflow.tracking_uri=... (or MLFLOW_TRACKING_URI), or leave mlflow out "
        "of tracker=[...]"
    )


class MlflowWriter:
    name = "mlflow"

    def __init__(
        self, run_dir: Path, options: dict[str, Any], sweep_dir: Path | None, info: dict[str, Any]
    ) -> None:
        # A server that does not answer: a few seconds, not MLflow's minutes of retries.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow.tracking import MlflowClient

        # MLflow's SQL store logs each database error with its traceback (~90 lines) before
        # raising it; the tracker's failure is said in one line (record.py) instead.
        logging.getLogger("mlflow.store.db.utils").addFilter(_no_tracebacks)
        self.run_dir = run_dir
        self.sweep_dir = sweep_dir
        self.info = info
        self.uri = tracking_uri(options.get("tracking_uri"))
        self.run_id: str | None = None
        self.logged: dict[str, int] = {}  # tag -> the last step the run has (when continued)
        self.pending: list[Any] = []  # per-step points not yet sent
        try:
            with _store_lock(_sqlite_path(self.uri)):
                self.client = MlflowClient(tracking_uri=self.uri)
                name = options.get("experiment") or DEFAULT_EXPERIMENT
                self.experiment_id = self._experiment(name)
        except Exception as err:
            raise _unreachable(self.uri, err) from err

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        store = _sqlite_path(self.uri)
        # A SQLite store keeps its artifacts beside it, not in ./mlruns of wherever it was
        # first used.
        location = (store.parent / "mlartifacts").absolute().as_uri() if store else None
        from mlflow.exceptions import MlflowException

        # MLflow 3's UI opens an experiment of this kind on its training runs, not on traces.
        tags = {"mlflow.experimentKind": "custom_model_development"}
        try:
            return self.client.create_experiment(name, artifact_location=location, tags=tags)
        except MlflowException:  # a job running beside this one created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start(
        self, hparams: dict[str, HParamValue], texts: dict[str, str], run_id: str | None
    ) -> str:
        try:
            if run_id is not None and self._continue(run_id):
                return run_id
            self.run_id = self._create(hparams, texts)
        except UserError:
            raise
        except Exception as err:
            raise _unreachable(self.uri, err) from err
        return self.run_id

    def _continue(self, run_id: str) -> bool:
        """Reopen the run an earlier attempt logged into; False when the store lacks it."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            log.warning(
                "tracker.mlflow: run %s is not in %s; a new MLflow run records this attempt",
                run_id,
                self.uri,
            )
            return False
        self.run_id = run_id
        for key in run.data.metrics:
            history = self.client.get_metric_history(run_id, key)
            self.logged[key] = max(m.step for m in history)
        self.client.update_run(run_id, status="RUNNING")
        if "failure_reason" in run.data.tags:  # of an earlier attempt, not of this one
            self.client.delete_tag(run_id, "failure_reason")
        return True

    def _create(self, hparams: dict[str, HParamValue], texts: dict[str, str]) -> str:
        from mlflow.entities import Param
        from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

        tags = {
            "run_dir": str(self.run_dir),
            "model": str(self.info.get("model", "")),
            "command": texts.get("command", ""),
            "overrides": texts.get("overrides", ""),
        }
        if texts.get("git_commit"):
            tags[MLFLOW_GIT_COMMIT] = texts["git_commit"]
        if self.sweep_dir is not None:
            tags[MLFLOW_PARENT_RUN_ID] = self._parent_run()
            tags["sweep_dir"] = str(self.sweep_dir)
        run = self.client.create_run(self.experiment_id, run_name=self.run_dir.name, tags=tags)
        run_id = run.info.run_id
        params = [Param(key, str(value)) for key, value in hparams.items()]
        self.client.log_batch(run_id, params=params)
        if "config" in texts:
            self.client.log_text(run_id, texts["config"], "config.yaml")
        return run_id

    def _parent_run(self) -> str:
        """The sweep's parent run: the one its folder names for this store, else a new one.
        Jobs running side by side take turns (a lock on the record), so there is one."""
        assert self.sweep_dir is not None
        record = self.sweep_dir / PARENT_RECORD
        with (self.sweep_dir / f".{PARENT_RECORD}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = read_parent_record(record)
            run_id = known.get(self.uri)
            if run_id is not None:
                if self.client.get_run(run_id).info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")  # a continued sweep
                return run_id
            tags = {"sweep_dir": str(self.sweep_dir)}
            run = self.client.create_run(
                self.experiment_id, run_name=self.sweep_dir.name, tags=tags
            )
            known[self.uri] = run.info.run_id
            write_json(record, known)
            return run.info.run_id

    def continue_from(self, epoch: int, step: int) -> None:
        """Nothing to cut: a continued run skips the points it already has (see start)."""

    def _points(self, values: dict[str, float], step: int) -> list[Any]:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [
            Metric(tag, value, now, step)
            for tag, value in values.items()
            if step > self.logged.get(tag, -1)
        ]

    def log_step(self, step: int, epoch: int, values: dict[str, float]) -> None:
        self.pending += self._points(values, step)
        if len(self.pending) >= _BATCH:
            self._send()

    def log_epoch(self, epoch: int, step: int | None, values: dict[str, float]) -> None:
        self.pending += self._points(values, epoch)
        self._send()

    def _send(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), _BATCH):
            self.client.log_batch(self.run_id, metrics=pending[start : start + _BATCH])

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        self.client.log_figure(self.run_id, figure, picture_path(tag, step))

    def log_image(self, tag: str, image: Any, step: int) -> None:
        pixels = image.permute(1, 2, 0).cpu().numpy()  # [3, H, W] -> [H, W, 3]
        self.client.log_image(self.run_id, pixels, picture_path(tag, step))

    def end(self, status: str, reason: str | None, final: dict[str, Any] | None) -> None:
        if self.run_id is None:
            return
        if final is not None:
            epochs = int(final.get("epochs", 0))
            numbers = {
                f"final/{k}": float(v)
                for k, v in final.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            self.log_epoch(epochs, None, numbers)
        self._send()
        if reason:
            self.client.set_tag(self.run_id, "failure_reason", reason)
        self.client.set_terminated(self.run_id, status=_STATUS[status])


def _no_tracebacks(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SQLAlchemy database error")


def read_parent_record(record: Path) -> dict[str, str]:
    """The sweep's parent run per store; a damaged record counts as none (a new parent run
    is made and recorded), with a warning naming it."""
    try:
        known = read_json(record)
    except FileNotFoundError:
        return {}
    except DamagedFile as err:
        log.warning("tracker.mlflow: %s; the sweep gets a new parent run", err)
        return {}
    return known if isinstance(known, dict) else {}


def end_sweep_runs(sweep_dir: Path) -> None:
    """When a sweep ends: its parent runs (one per store its jobs used) FINISHED."""
    record = sweep_dir / PARENT_RECORD
    if not record.is_file():
        return
    from mlflow.tracking import MlflowClient

    for uri, run_id in read_parent_record(record).items():
        try:
            MlflowClient(tracking_uri=uri).set_terminated(run_id, status="FINISHED")
        except Exception as err:
            log.warning("tracker.mlflow: could not end the sweep's parent run %s: %s", run_id, err)
