"""The run's record: one place the training loop reports to (log_step, log_epoch, finish,
and how training ended), which keeps metrics.json and hands the same points to every tracker
chosen with `tracker=[...]` (one writer each: tensorboard.py, csv_writer.py,
mlflow_writer.py, wandb_writer.py).

A writer has start / continue_from / log_step / log_epoch / end. One that cannot be opened
stops the run before training with one line naming `tracker.<name>`; one other than
TensorBoard that fails later says so once and is dropped, training going on with the others
(TensorBoard and metrics.json keep everything).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from cifar_exp.records.atomic import write_json
from cifar_exp.records.checkpoint import resume_hint
from cifar_exp.runtime.signals import Interrupted
from cifar_exp.tracking.tags import (
    EPOCH_TAGS,
    FINAL_ONLY,
    STEP_GRAD_NORM_TAG,
    STEP_LOSS_TAG,
    STEP_LR_TAG,
    HParamValue,
)

log = logging.getLogger(__name__)

# What a run records when its config names no trackers (one from before they could be chosen).
DEFAULT_TRACKERS: dict[str, Any] = {"tensorboard": {}}


class Writer(Protocol):
    """One tracker's side of the record. The values are keyed by tag (tags.py)."""

    name: str

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str], run_id: Any) -> Any:
        """Open the tracker's run (`run_id`: the one an earlier attempt opened, to continue);
        returns the id to keep in the checkpoint and manifest, if the tracker has one."""

    def continue_from(self, epoch: int, step: int) -> None:
        """Before start(), when resuming: forget what was logged after the checkpoint."""

    def log_step(self, step: int, epoch: int, values: dict[str, float]) -> None: ...

    def log_epoch(self, epoch: int, step: int | None, values: dict[str, float]) -> None: ...

    def end(self, status: str, reason: str | None, final: dict[str, Any] | None) -> None:
        """`status` as the manifest says it: ok, failed (with `reason`) or interrupted."""


def open_writers(
    run_dir: Path, trackers: dict[str, Any], sweep_dir: Path | None, info: dict[str, Any]
) -> list[Writer]:
    """The writers of the trackers chosen (a tracker's options: None when not chosen). The
    optional ones are imported only when chosen: MLflow's import alone takes seconds."""
    writers: list[Writer] = []
    for name, options in trackers.items():
        if options is None:
            continue
        if name == "tensorboard":
            from cifar_exp.tracking.tensorboard import TensorBoardWriter

            writers.append(TensorBoardWriter(run_dir))
        elif name == "csv":
            from cifar_exp.tracking.csv_writer import CsvWriter

            writers.append(CsvWriter(run_dir))
        elif name == "mlflow":
            from cifar_exp.tracking.mlflow_writer import MlflowWriter

            writers.append(MlflowWriter(run_dir, options, sweep_dir, info))
        elif name == "wandb":
            from cifar_exp.tracking.wandb_writer import WandbWriter

            writers.append(WandbWriter(run_dir, options, sweep_dir, info))
        else:
            raise ValueError(f"no writer for tracker {name!r}")
    return writers


def failure_reason(err: BaseException) -> str:
    """One line saying why training failed, for the trackers that keep it."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


class RunTracker:
    """Writes the run's records; with write=False (every rank but 0 under torchrun) nothing.

    Call start() once training is set up (after continue_from() when resuming), log while
    training, and finish() at the end; session() ends the trackers' runs as failed or
    interrupted when training raises. `trackers`: cfg.tracker as a plain dict; `sweep_dir`:
    the sweep folder of a sweep's job (trackers group the sweep's jobs by it)."""

    def __init__(
        self,
        run_dir: Path,
        info: dict[str, Any],
        write: bool = True,
        trackers: dict[str, Any] | None = None,
        sweep_dir: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.write = write
        self.metrics: dict[str, Any] = {**info, "epochs": [], "final": None}
        self.run_ids: dict[str, Any] = {}  # tracker -> its run's id, kept in checkpoints
        self.epoch = 0  # epochs logged: the steps logged next belong to the one after
        self.step: int | None = None  # the optimizer step at the last epoch logged
        self.writers: list[Writer] = []
        if write:
            self.writers = open_writers(run_dir, trackers or DEFAULT_TRACKERS, sweep_dir, info)

    @property
    def writer(self) -> Any:
        """TensorBoard's SummaryWriter, which the pictures use; None when not recorded here."""
        return next((w.writer for w in self.writers if w.name == "tensorboard"), None)

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": copy.deepcopy(self.metrics), "runs": dict(self.run_ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = copy.deepcopy(state["metrics"])
        self.run_ids = dict(state.get("runs", {}))  # none in checkpoints from before trackers

    def last_epoch(self) -> dict[str, Any]:
        """The last epoch's entry of metrics.json ({} before the first)."""
        return self.metrics["epochs"][-1] if self.metrics["epochs"] else {}

    def continue_from(self, epoch: int, step: int) -> None:
        """After loading a checkpoint: cut metrics.json and every tracker back to it."""
        self.metrics["epochs"] = [e for e in self.metrics["epochs"] if e["epoch"] <= epoch]
        self.metrics["final"] = None
        self.epoch, self.step = epoch, step
        if not self.write:
            return
        for writer in self.writers:
            writer.continue_from(epoch, step)
        self._write_metrics()

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str]) -> None:
        """Open every tracker's run: the hyperparameters (HParams' set) and what produced the
        run (`texts`: TEXT_TAGS keys to plain text). A tracker that cannot start stops the
        run here, before training, with its one line."""
        for writer in self.writers:
            run_id = writer.start(hparams, texts, self.run_ids.get(writer.name))
            if run_id is not None:
                self.run_ids[writer.name] = run_id

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Record how training ended when it raises: interrupted (Ctrl-C, SIGTERM) or
        failed, with the reason. The metrics logged so far stay."""
        try:
            yield
        except (Interrupted, KeyboardInterrupt):
            self._end("interrupted")
            raise
        except BaseException as err:
            self._end("failed", failure_reason(err))
            raise

    def log_step(self, step: int, loss: float, lr: float, grad_norm: float) -> None:
        values = {STEP_LOSS_TAG: loss, STEP_LR_TAG: lr, STEP_GRAD_NORM_TAG: grad_norm}
        self._each("log_step", step, self.epoch + 1, values)

    def log_epoch(self, epoch: int, values: dict[str, float], step: int | None = None) -> None:
        """The epoch's values (metrics.json keys, EPOCH_TAGS' tags in the trackers), after
        optimizer step `step`."""
        if not self.write:
            return
        self._each("log_epoch", epoch, step, {EPOCH_TAGS[k]: v for k, v in values.items()})
        self.epoch, self.step = epoch, step
        self.metrics["epochs"].append({"epoch": epoch, **values})
        self._write_metrics()

    def finish(self, final: dict[str, Any]) -> None:
        """Record the final metrics and end every tracker's run as a success.

        The test split scored once at the end (with a validation split, or after 0 epochs)
        joins the test/ curves at the last epoch, where HParams reads its final value."""
        if not self.write:
            return
        epochs = final["epochs"]
        logged = self.metrics["epochs"][-1] if self.metrics["epochs"] else {}
        end = {EPOCH_TAGS[k]: v for k, v in final.items() if k.endswith(FINAL_ONLY)}
        if logged.get("epoch") != epochs or "test_acc" not in logged:
            end |= {EPOCH_TAGS[k]: final[k] for k in ("test_acc", "test_loss")}
        if end:
            self._each("log_epoch", epochs, self.step, end)
        self._end("ok", final=final)
        self.metrics["final"] = final
        self._write_metrics()

    def _write_metrics(self) -> None:
        write_json(self.run_dir / "metrics.json", self.metrics, then=resume_hint(self.run_dir))

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        """A matplotlib figure for `tag` at `step`, in every tracker that keeps pictures."""
        self._pictures("log_figure", tag, figure, step)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        """An image [3, H, W] in [0, 1] for `tag` at `step`, likewise."""
        self._pictures("log_image", tag, image, step)

    def _pictures(self, call: str, *args: Any) -> None:
        if self.write:
            self._each(call, *args, only=[w for w in self.writers if hasattr(w, call)])

    def _end(self, status: str, reason: str | None = None, final: Any = None) -> None:
        self._each("end", status, reason, final)
        self.writers = []  # ended: nothing more is written

    def _each(self, call: str, *args: Any, only: list[Writer] | None = None) -> None:
        """Call every writer (or those `only` names); one other than TensorBoard that fails
        is dropped with a warning."""
        for writer in list(self.writers) if only is None else only:
            try:
                getattr(writer, call)(*args)
            except Exception as err:
                if writer.name == "tensorboard":
                    raise
                self.writers.remove(writer)
                reason = failure_reason(_root_cause(err))
                ended = call == "end" or _ended_quietly(writer, f"tracker failed: {reason}")
                log.warning(
                    "tracker.%s failed (%s); it records nothing more of this run, which goes "
                    "on with the other trackers (metrics.json keeps every value)%s",
                    writer.name,
                    reason,
                    "" if ended else "; its run stays open until this run is resumed",
                )


def _root_cause(err: BaseException) -> BaseException:
    """The error a library's wrappers started from (MLflow's around SQLAlchemy's around
    sqlite3's "database or disk is full"): the one that says what to fix."""
    seen = {id(err)}
    while (inner := err.__cause__ or err.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    return err


def _ended_quietly(writer: Writer, reason: str) -> bool:
    """End a failed tracker's run as failed, if its store still takes that."""
    try:
        writer.end("failed", reason, None)
    except Exception:
        return False
    return True
