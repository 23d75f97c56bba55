"""The TensorBoard writer: event files in the run folder itself (per-epoch and per-step
scalars, an HParams session with its status, a custom scalars layout, the run's Text tab),
and the pictures (pictures.py) through its SummaryWriter.

The event files sit directly in the run folder, so TensorBoard names each run by its
folder and nothing else; HParams names its row by the folder's own name first (`trial_id`).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from cifar_exp.records.naming import trial_id
from cifar_exp.runtime.signals import gate
from cifar_exp.tracking.tags import (
    LAYOUT,
    LAYOUT_TAG,
    STEP_TAGS,
    TEXT_TAGS,
    HParamValue,
    event_files,
)

# Written once per attempt (a resumed run writes its own): dropped when earlier events are
# trimmed. "final/" and "model/params" are what earlier versions wrote once at the end.
_PER_ATTEMPT = ("_hparams_/", "run/", LAYOUT_TAG, "final/", "model/params")


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


def record_failure_before_training(run_dir: Path, hparams: dict[str, HParamValue]) -> None:
    """HParams' row for a sweep job that failed before training started (a value that cannot
    work, data that cannot be read): its hyperparameters and STATUS_FAILURE."""
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        writer.file_writer.add_summary(session_start_summary(hparams, run_dir))
        writer.file_writer.add_summary(session_end_summary(api_pb2.STATUS_FAILURE))


def code_block(text: str) -> str:
    """Markdown that the Text tab shows verbatim."""
    return "\n".join(f"    {line}" for line in text.splitlines())


# How a run ended (the manifest's words) -> HParams' status. TensorBoard has no status of its
# own for an interruption: unknown.
_STATUS = {
    "ok": api_pb2.STATUS_SUCCESS,
    "failed": api_pb2.STATUS_FAILURE,
    "interrupted": api_pb2.STATUS_UNKNOWN,
}


class TensorBoardWriter:
    """tracker=[tensorboard]: the run's event files (see the module's docstring)."""

    name = "tensorboard"

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        # A resumed run rewrites these up to its checkpoint (see continue_from), moving those
        # of a run made before the event files moved out of a tensorboard/ subfolder. A new run
        # replaces them (start): they are then what a failed attempt left, which the run
        # directory guard let this run replace.
        self.earlier_event_files = sorted(
            [*event_files(run_dir), *run_dir.glob("tensorboard/events.*")]
        )
        self.writer = SummaryWriter(log_dir=str(run_dir))

    def log_figure(self, tag: str, figure: Any, step: int) -> None:
        self.writer.add_figure(tag, figure, step, close=False)

    def log_image(self, tag: str, image: Any, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def continue_from(self, epoch: int, step: int) -> None:
        # Not cut by a signal: the old files go only once the new one holds their events,
        # else the next resume would trim both and every point would appear twice.
        with gate.deferred():
            trim_events(self.earlier_event_files, self.writer, epoch, step)
            self.earlier_event_files = []
        with contextlib.suppress(OSError):  # the old layout's folder, now empty
            (self.run_dir / "tensorboard").rmdir()

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str], run_id: Any) -> None:
        """Open the HParams session; write the Text tab (each text verbatim) and the layout."""
        for path in self.earlier_event_files:
            path.unlink()
        self.writer.file_writer.add_summary(session_start_summary(hparams, self.run_dir))
        for key, text in texts.items():
            self.writer.add_text(TEXT_TAGS[key], code_block(text), 0)
        self.writer.add_custom_scalars(LAYOUT)
        self.writer.flush()

    def log_step(self, step: int, epoch: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def log_epoch(self, epoch: int, step: int | None, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def end(self, status: str, reason: str | None, final: dict[str, Any] | None) -> None:
        self.writer.file_writer.add_summary(session_end_summary(_STATUS[status]))
        self.writer.close()
