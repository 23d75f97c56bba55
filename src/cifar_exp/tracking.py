"""What a run records: TensorBoard event files in the run folder itself (per-epoch and
per-step scalars, an HParams session with its status, a custom scalars layout, the config
as text) and metrics.json beside them.

The event files sit directly in the run folder, so TensorBoard names each run by its
folder and nothing else; HParams names its row by the folder's own name first (`trial_id`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from cifar_exp.atomic import write_json
from cifar_exp.checkpoint import resume_hint
from cifar_exp.naming import trial_id
from cifar_exp.signals import Interrupted, gate

# metrics.json key -> TensorBoard tag for the per-epoch scalars (x axis: epoch). TensorBoard
# orders its groups by name: `test/` and `train/` come first, so the page opens on the curves.
EPOCH_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
    "epoch_s": "train/epoch_s",  # training and the epoch's evaluation
    "train_s": "train/train_s",  # training alone
    "init_s": "train/init_s",  # a data-dependent initialization before it (epoch 1)
    "compile_s": "train/compile_s",
    "peak_mem_mb": "train/peak_mem_mb",
    "grad_clipped_share": "train/grad_clipped_share",  # of the epoch's steps (grad_clip)
}
# Measured, not determined by the seed: they differ between two runs of the same config.
TIMING_TAGS = {
    EPOCH_TAGS[key]
    for key in ("images_per_s", "epoch_s", "train_s", "init_s", "compile_s", "peak_mem_mb")
}
# Per-step scalars (x axis: optimizer step).
STEP_LOSS_TAG = "train_step/loss"
STEP_LR_TAG = "train_step/lr"
STEP_GRAD_NORM_TAG = "train_step/grad_norm"  # the total gradient norm, before clipping
STEP_TAGS = {STEP_LOSS_TAG, STEP_LR_TAG, STEP_GRAD_NORM_TAG}
# The Text tab: what produced the run.
TEXT_TAGS = {
    "config": "run/config",
    "overrides": "run/overrides",
    "command": "run/command",
    "git_commit": "run/git_commit",
}
LAYOUT_TAG = "custom_scalars__config__"  # where SummaryWriter.add_custom_scalars writes
# Training and evaluation side by side in one chart each (the Custom Scalars tab).
LAYOUT = {
    "train vs evaluation": {
        "loss": ["Multiline", [r"^(train|val|test)/loss$"]],
        "accuracy": ["Multiline", [r"^(train|val|test)/acc$"]],
    }
}
# Written once per attempt (a resumed run writes its own): dropped when earlier events are
# trimmed. "final/" and "model/params" are what earlier versions wrote once at the end.
_PER_ATTEMPT = ("_hparams_/", "run/", LAYOUT_TAG, "final/", "model/params")

HParamValue = bool | int | float | str


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def select_hparams(config: dict[str, Any], keys: list[str]) -> dict[str, HParamValue]:
    """The run's HParams entries: `keys` in order, with typed values; unset (None) ones left
    out so that numeric columns hold only numbers."""
    flat = flatten(config)
    keys = list(dict.fromkeys(k for k in keys if flat.get(k) is not None))
    return {k: flat[k] if isinstance(flat[k], HParamValue) else str(flat[k]) for k in keys}


def trim_events(old_files: list[Path], writer: SummaryWriter, epoch: int, step: int) -> None:
    """Keep only the events up to a checkpoint: per-epoch tags up to `epoch`, per-step tags
    up to `step`, nothing written once per attempt; rewrite them into `writer`'s new file and
    drop the old files, so a resumed run's curves have no duplicated or out-of-order points
    and its HParams session is the resumed attempt's."""
    for path in old_files:
        for record in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(record)
            if not event.HasField("summary"):
                continue
            keep = [v for v in event.summary.value if _kept(v.tag, event.step, epoch, step)]
            if not keep:
                continue
            del event.summary.value[:]
            event.summary.value.extend(keep)
            writer.file_writer.add_event(event, walltime=event.wall_time)
    writer.flush()
    for path in old_files:
        path.unlink()


def _kept(tag: str, at: int, epoch: int, step: int) -> bool:
    if tag.startswith(_PER_ATTEMPT):
        return False
    return at <= (step if tag in STEP_TAGS else epoch)


def _hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    data.version = hparams_metadata.PLUGIN_DATA_VERSION
    plugin = SummaryMetadata.PluginData(
        plugin_name=hparams_metadata.PLUGIN_NAME, content=data.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def session_start_summary(hparams: dict[str, HParamValue], run_dir: Path) -> Summary:
    """HParams' record of a run's hyperparameters, each with its own type, under the row
    name `trial_id(run_dir)`.

    No experiment summary goes with it: TensorBoard then builds the table from all the
    sessions it finds, with every value of a string column (so it can be filtered) and the
    columns whose values differ between the runs shown (what a sweep varies) first."""
    info = plugin_data_pb2.SessionStartInfo(
        start_time_secs=time.time(), group_name=trial_id(run_dir)
    )
    for key, value in hparams.items():
        if isinstance(value, bool):  # before int: a bool is an int to Python
            info.hparams[key].bool_value = value
        elif isinstance(value, int | float):
            info.hparams[key].number_value = value
        else:
            info.hparams[key].string_value = value
    data = plugin_data_pb2.HParamsPluginData(session_start_info=info)
    return _hparams_summary(hparams_metadata.SESSION_START_INFO_TAG, data)


def session_end_summary(status: int) -> Summary:
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
    return _hparams_summary(hparams_metadata.SESSION_END_INFO_TAG, data)


def event_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("events.out.tfevents.*"))


def record_failure_before_training(run_dir: Path, hparams: dict[str, HParamValue]) -> None:
    """HParams' row for a sweep job that failed before training started (a value that cannot
    work, data that cannot be read): its hyperparameters and STATUS_FAILURE."""
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        writer.file_writer.add_summary(session_start_summary(hparams, run_dir))
        writer.file_writer.add_summary(session_end_summary(api_pb2.STATUS_FAILURE))


def code_block(text: str) -> str:
    """Markdown that the Text tab shows verbatim."""
    return "\n".join(f"    {line}" for line in text.splitlines())


class RunTracker:
    """Writes the run's records; with write=False (every rank but 0 under torchrun) nothing.

    Call start() once training is set up (after continue_from() when resuming), log while
    training, and finish() at the end; session() ends the HParams session as failed or
    interrupted when training raises."""

    def __init__(self, run_dir: Path, info: dict[str, Any], write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write
        self.metrics: dict[str, Any] = {**info, "epochs": [], "final": None}
        if not write:
            return
        # A resumed run rewrites these up to its checkpoint (see continue_from), moving those
        # of a run made before the event files moved out of a tensorboard/ subfolder. A new run
        # replaces them (start): they are then what a failed attempt left, which the run
        # directory guard let this run replace.
        self.earlier_event_files = sorted(
            [*event_files(run_dir), *run_dir.glob("tensorboard/events.*")]
        )
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def state_dict(self) -> dict[str, Any]:
        return {"metrics": copy.deepcopy(self.metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metrics = copy.deepcopy(state["metrics"])

    def continue_from(self, epoch: int, step: int) -> None:
        """After loading a checkpoint: cut TensorBoard and metrics.json back to it."""
        self.metrics["epochs"] = [e for e in self.metrics["epochs"] if e["epoch"] <= epoch]
        self.metrics["final"] = None
        if not self.write:
            return
        # Not cut by a signal: the old files go only once the new one holds their events,
        # else the next resume would trim both and every point would appear twice.
        with gate.deferred():
            trim_events(self.earlier_event_files, self.writer, epoch, step)
            self.earlier_event_files = []
        with contextlib.suppress(OSError):  # the old layout's folder, now empty
            (self.run_dir / "tensorboard").rmdir()
        self._write_metrics()

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str]) -> None:
        """Open the run's HParams session and write its Text tab and chart layout.

        `texts` maps TEXT_TAGS keys to plain text; each is shown verbatim."""
        if not self.write:
            return
        for path in self.earlier_event_files:
            path.unlink()
        self.writer.file_writer.add_summary(session_start_summary(hparams, self.run_dir))
        for key, text in texts.items():
            self.writer.add_text(TEXT_TAGS[key], code_block(text), 0)
        self.writer.add_custom_scalars(LAYOUT)
        self.writer.flush()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Record in HParams how training ended when it raises: interrupted (Ctrl-C, SIGTERM)
        as STATUS_UNKNOWN, TensorBoard having no status of its own for it; anything else as
        STATUS_FAILURE. The metrics logged so far stay."""
        try:
            yield
        except (Interrupted, KeyboardInterrupt):
            self._end(api_pb2.STATUS_UNKNOWN)
            raise
        except BaseException:
            self._end(api_pb2.STATUS_FAILURE)
            raise

    def log_step(self, step: int, loss: float, lr: float, grad_norm: float) -> None:
        if not self.write:
            return
        self.writer.add_scalar(STEP_LOSS_TAG, loss, step)
        self.writer.add_scalar(STEP_LR_TAG, lr, step)
        self.writer.add_scalar(STEP_GRAD_NORM_TAG, grad_norm, step)

    def log_epoch(self, epoch: int, values: dict[str, float]) -> None:
        if not self.write:
            return
        for key, value in values.items():
            self.writer.add_scalar(EPOCH_TAGS[key], value, epoch)
        self.writer.flush()
        self.metrics["epochs"].append({"epoch": epoch, **values})
        self._write_metrics()

    def finish(self, final: dict[str, Any]) -> None:
        """Record the final metrics and end the HParams session as a success.

        The test split scored once at the end (with a validation split, or after 0 epochs)
        joins the test/ curves at the last epoch, where HParams reads its final value."""
        if not self.write:
            return
        epochs = final["epochs"]
        logged = self.metrics["epochs"][-1] if self.metrics["epochs"] else {}
        if logged.get("epoch") != epochs or "test_acc" not in logged:
            self.writer.add_scalar(EPOCH_TAGS["test_acc"], final["test_acc"], epochs)
            self.writer.add_scalar(EPOCH_TAGS["test_loss"], final["test_loss"], epochs)
        self._end(api_pb2.STATUS_SUCCESS)
        self.metrics["final"] = final
        self._write_metrics()

    def _write_metrics(self) -> None:
        write_json(self.run_dir / "metrics.json", self.metrics, then=resume_hint(self.run_dir))

    def _end(self, status: int) -> None:
        if not self.write:
            return
        self.writer.file_writer.add_summary(session_end_summary(status))
        self.writer.close()
