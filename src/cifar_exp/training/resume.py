"""`resume=<run dir or checkpoint>`: which config a resumed run uses.

A resumed run keeps the config its checkpoint was written with. Overrides on the command
line may change only what leaves the experiment itself alone (how long, how it is logged,
where the data lies, where it runs); any other override that differs from the run's value
is refused, so a resumed run always ends where an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cifar_exp.config import Config, resumable_keys, startup_keys
from cifar_exp.errors import UserError
from cifar_exp.records.checkpoint import find_checkpoint, load_checkpoint, run_dir_of
from cifar_exp.records.run_folder import recorded_final
from cifar_exp.tracking import DEFAULT_TRACKERS

# trainer.epochs may change (config.resumable_keys) only with schedules that do not depend on it.
EPOCH_FREE_SCHEDULERS = ("none", "step")


def saved_config(yaml_text: str, source: str) -> DictConfig:
    """The config stored in a checkpoint, typed by today's schemas."""
    try:
        stored = OmegaConf.create(yaml_text)
        if "tracker" not in stored:  # written before trackers were chosen: TensorBoard's
            stored.tracker = DEFAULT_TRACKERS
        if "dataset" in stored and "val_stratified" not in stored.dataset:
            # Written when the validation split was drawn at random: the same split again.
            stored.dataset.val_stratified = False
        return OmegaConf.merge(OmegaConf.structured(Config), stored)
    except OmegaConfBaseException as err:
        raise UserError(
            f"checkpoint {source} holds a config this cifar-exp does not accept ({err}); "
            "resume it with the cifar-exp version that wrote it"
        ) from err


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _differences(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each leaf that differs; a group override compares its keys."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            diff
            for name in sorted(old.keys() | new.keys())
            for diff in _differences(f"{key}.{name}", old.get(name), new.get(name))
        ]
    return [] if old == new else [(key, old, new)]


def override_keys(overrides: list[str]) -> list[str]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed]


def resume_config(
    saved: DictConfig, requested: DictConfig, overrides: list[str], completed_epochs: int
) -> DictConfig:
    """The saved config with the requested harmless changes; UserError for any other change."""
    cfg = saved.copy()
    harmless = resumable_keys()
    allowed = ", ".join(harmless)
    for key in override_keys(overrides):
        if key in startup_keys():
            continue
        new = _plain(OmegaConf.select(requested, key, default=None))
        old = _plain(OmegaConf.select(saved, key, default=None))
        for leaf, was, wanted in _differences(key, old, new):
            if not any(leaf == k or leaf.startswith(f"{k}.") for k in harmless):
                raise UserError(
                    f"resume: {leaf} would change the experiment (the run has {leaf}={was}, "
                    f"the override gives {wanted}); a resumed run keeps its config. Allowed "
                    f"changes: {allowed}. Start a new run to change {leaf}."
                )
            OmegaConf.update(cfg, leaf, wanted, merge=False)
    epochs = cfg.trainer.epochs
    if epochs != saved.trainer.epochs and saved.scheduler.name not in EPOCH_FREE_SCHEDULERS:
        raise UserError(
            f"resume: trainer.epochs cannot change with scheduler={saved.scheduler.name}: its "
            f"schedule is laid out over the planned {saved.trainer.epochs} epochs. Start a new "
            "run for a longer schedule."
        )
    ramp = saved.trainer.get("ema_decay") and saved.trainer.get("ema_ramp_pow")
    if epochs != saved.trainer.epochs and ramp:
        raise UserError(
            f"resume: trainer.epochs cannot change with trainer.ema_ramp_pow={ramp}: the "
            f"averaging's ramp is laid out over the planned {saved.trainer.epochs} epochs. "
            "Start a new run for a longer schedule."
        )
    if epochs < completed_epochs:
        raise UserError(
            f"resume: trainer.epochs={epochs} but the run has already completed "
            f"{completed_epochs} epochs"
        )
    return cfg


def prepare_resume(
    cfg: DictConfig, overrides: list[str]
) -> tuple[DictConfig, dict[str, Any], Path]:
    """The config, checkpoint state and checkpoint path to continue the run `cfg.resume` names."""
    path = find_checkpoint(cfg.resume)
    state = load_checkpoint(path)
    progress = state.get("progress", {})
    resumed = resume_config(
        saved_config(state["config"], str(path)), cfg, overrides, progress.get("epoch", 0)
    )
    # A run killed after its last checkpoint but before it recorded its end resumes to do
    # just that: the final evaluation, metrics.json, the manifest, the trackers.
    recorded = ended_as_recorded(run_dir_of(path), progress.get("epoch"))
    if progress.get("stopped") and recorded:
        stopped = progress["stopped"]
        raise UserError(
            f"the run in {path.parent.parent} is finished: it stopped after epoch "
            f"{stopped['epoch']} ({stopped['reason']}); start a new run to train it differently"
        )
    at_the_end = progress.get("epoch") == resumed.trainer.epochs and not progress.get("batch")
    if at_the_end and recorded:
        raise UserError(
            f"the run in {path.parent.parent} already finished its {resumed.trainer.epochs} "
            "epochs; to train longer add trainer.epochs=<more>"
        )
    return resumed, state, path


def ended_as_recorded(run_dir: Path, epoch: int | None) -> bool:
    """Whether the run in `run_dir` recorded its final metrics after the epoch its checkpoint
    holds (metrics.json's `final`); an unreadable metrics.json recorded nothing."""
    final = recorded_final(run_dir)
    return final is not None and final.get("epochs") == epoch
