"""Pruning a search's trials from inside their jobs: a stop rule (stop_rules.py) that reports
each per-epoch evaluation to the job's Optuna trial and stops the job when the pruner says so.

A job reaches its trial without any channel from the sweeper: the sweeper launches trial N
as job number N (search.py), and the job's own Hydra config names the sweeper's storage
(default: <sweep folder>/optuna.db), study and pruner. The job then stops at that epoch
boundary like an early stop, with status `pruned` (last.pt kept); the sweeper reads the
status back from its folder and tells the study PRUNED.

Optuna is imported only when a search with a pruner builds a job's trainer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cifar_exp.components.stop_rules import Stop, StopRule
from cifar_exp.errors import UserError
from cifar_exp.runtime import distributed

log = logging.getLogger(__name__)

SWEEPER = "cifar_exp_optuna"
STUDY_FILE = "optuna.db"  # the study's SQLite file in the sweep folder, without a storage
PRUNED = "pruned"
PRUNERS = ("median", "successive_halving", "hyperband", "none")


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """The study's database: `storage` when given, else a SQLite file in the sweep folder."""
    return storage or f"sqlite:///{(sweep_dir / STUDY_FILE).absolute()}"


def checked_pruner(options: Any) -> Any:
    """hydra.sweeper.pruner, refused in one line when it was given a value, not its keys."""
    if options is None or hasattr(options, "get"):
        return options
    raise UserError(
        f"hydra.sweeper.pruner={options} sets the pruner's group of keys to a value; choose "
        f"the pruner with hydra.sweeper.pruner.name={options} (one of {', '.join(PRUNERS)})"
    )


def build_pruner(options: DictConfig | None) -> Any:
    """hydra.sweeper.pruner -> an Optuna pruner, or None for `none`."""
    import optuna

    options = checked_pruner(options) or {"name": "none"}
    name = options.get("name", "none")
    if name not in PRUNERS:
        raise UserError(
            f"hydra.sweeper.pruner.name={name} is not a pruner; choose one of {', '.join(PRUNERS)}"
        )
    if name == "none":
        return None
    startup = int(options.get("n_startup_trials", 5))
    warmup = int(options.get("n_warmup_steps", 1))
    if startup < 0 or warmup < 0:
        raise UserError(
            "hydra.sweeper.pruner.n_startup_trials and n_warmup_steps must be >= 0 "
            f"(got {startup} and {warmup})"
        )
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup))
    return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup))


class TrialPruning:
    """Report `key` (the per-epoch value the search optimizes) to the trial after each
    evaluation; a Stop with status `pruned` when the study's pruner says the trial is
    hopeless. Its decisions live in the study, so there is no state of its own to save.

    Under torchrun the first process alone reports and asks, and tells the others (through
    a tensor on `device`): the pruner's answer may change from one moment to the next, and
    every process must stop at the same epoch."""

    KEY = "pruned_at_epoch"

    def __init__(self, trial: Any, key: str, pruner: str, device: torch.device) -> None:
        self.trial, self.key, self.pruner, self.device = trial, key, pruner, device

    def after_evaluation(self, epoch: int, values: dict[str, float]) -> Stop | None:
        if self.key not in values:
            return None
        value = values[self.key]
        prune = torch.zeros((), device=self.device)
        if distributed.place().is_main:
            self.trial.report(value, epoch)
            prune.fill_(float(self.trial.should_prune()))
        if not distributed.all_reduce(prune, op="max").item():
            return None
        reason = (
            f"pruned at epoch {epoch}: the {self.pruner} pruner found {self.key} {value:.4f} "
            f"hopeless next to the study's other trials (trial {self.trial.number})"
        )
        return Stop(PRUNED, epoch, reason, self.KEY)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def trial_pruning(has_val: bool, device: torch.device) -> StopRule | None:
    """The rule for a job of a search whose sweeper has a pruner; None otherwise (a single
    run, another sweeper, `pruner.name=none`, a trial that is not running)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.get("sweeper")
    if sweeper is None or SWEEPER not in str(sweeper.get("_target_", "")):
        return None
    if str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return None
    pruner = build_pruner(sweeper.get("pruner"))
    if pruner is None:
        return None
    return open_trial(hydra_cfg, sweeper, pruner, has_val, device)


def open_trial(
    hydra_cfg: DictConfig, sweeper: DictConfig, pruner: Any, has_val: bool, device: torch.device
) -> Any:
    """The job's trial (number = the job's number) in the sweeper's study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(sweeper.get("storage"), Path(hydra_cfg.sweep.dir).absolute())
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=pruner)
    number = int(hydra_cfg.job.num)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
        log.info("trial %d is not running in study %s: no pruning", number, study.study_name)
        return None
    # The value the job returns to the search, per epoch: validation, else test, accuracy.
    key = "val_acc" if has_val else "test_acc"
    name = sweeper.pruner.name
    log.info("pruning: each epoch's %s goes to trial %d (%s pruner)", key, number, name)
    return TrialPruning(optuna.trial.Trial(study, trial_id), key, name, device)
