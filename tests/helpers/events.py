"""Reading a run's TensorBoard event files back, as TensorBoard's own loader reads them."""

from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

# Keep every event of each kind (0: no limit) instead of TensorBoard's sample of them.
KEEP_ALL = {"scalars": 0, "tensors": 0, "images": 0, "histograms": 0}


def load_events(run_dir: Path, purge_orphaned_data: bool = True) -> EventAccumulator:
    """Every scalar, tensor, image and histogram the run wrote, loaded. With
    purge_orphaned_data=False, also the points TensorBoard would hide after a restart."""
    acc = EventAccumulator(
        str(run_dir), size_guidance=KEEP_ALL, purge_orphaned_data=purge_orphaned_data
    )
    acc.Reload()
    return acc


def tensorboard_points(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Each scalar tag's (step, value) points as written, none hidden or sampled away."""
    acc = load_events(run_dir, purge_orphaned_data=False)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def hparams_session(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The run's HParams session as TensorBoard reads it: its hyperparameters (name -> plain
    value) and the name of its status (None while it has not ended)."""
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" not in content  # TensorBoard infers it from all sessions
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = {
        key: getattr(value, value.WhichOneof("kind"))
        for key, value in start.session_start_info.hparams.items()
    }
    end = content.get("_hparams_/session_end_info")
    if end is None:
        return hparams, None
    status = plugin_data_pb2.HParamsPluginData.FromString(end).session_end_info.status
    return hparams, api_pb2.Status.Name(status)
