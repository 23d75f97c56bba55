"""Continuing a sweep: the same command into the same sweep folder keeps its finished jobs,
resumes the interrupted ones from their last.pt and starts the rest over. `check_sweep_dir`
decides whether a folder may be continued (the same sweep, nothing in use); `plan_job` what
each job does about its earlier attempt."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cifar_exp.components.pruning import PRUNERS, checked_pruner
from cifar_exp.errors import UserError
from cifar_exp.records.checkpoint import CHECKPOINT_DIR, LAST
from cifar_exp.records.lock import LOCK_FILE, hold
from cifar_exp.records.manifest import MANIFEST_FILE
from cifar_exp.records.naming import NOT_SWEPT, override_key
from cifar_exp.records.run_folder import (
    attempt_status,
    check_writable,
    previous_run,
    recorded_final,
    refuse_if_in_use,
)

log = logging.getLogger("cifar_exp")

MULTIRUN_RECORD = "multirun.yaml"  # the sweep's config, saved by Hydra's sweepers (and ours)

# What a job's folder keeps when the job starts over: the record of earlier attempts, and
# the lock its process holds.
KEPT_ON_RESTART = (".hydra", MANIFEST_FILE, LOCK_FILE)


def plan_job(job_dir: Path, rerun_failed: bool) -> str:
    """What a sweep job does about an earlier attempt in its folder: 'finished' (keep it
    untouched), 'failed' (keep it, unless rerun_failed), 'resume' (from its last.pt) or
    'start' (from scratch)."""
    status = attempt_status(job_dir)
    # A pruned job ended as its search asked (pruning.py): continuing keeps it pruned.
    if status == "pruned" and (job_dir / "metrics.json").is_file():
        return "finished"
    if status == "ok" and recorded_final(job_dir) is not None:
        return "finished"
    if status == "failed":
        return "start" if rerun_failed else "failed"
    # "ok" here: its metrics.json is damaged or gone; the resume records them again.
    if status in ("ok", "running", "interrupted") and (job_dir / CHECKPOINT_DIR / LAST).is_file():
        return "resume"
    return "start"


def describe_jobs(sweep_dir: Path, rerun_failed: bool) -> str:
    """'2 finished (kept), 1 to resume, ...': what continuing the sweep does to its jobs."""
    words = {
        "finished": "finished (kept)",
        "failed": "failed (kept; rerun_failed=true reruns them)",
        "resume": "to resume from last.pt",
        "start": "to start (over)",
    }
    jobs = [p for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()]
    plans = [plan_job(p, rerun_failed) for p in jobs]
    return ", ".join(f"{plans.count(p)} {text}" for p, text in words.items() if p in plans)


def clear_attempt(job_dir: Path) -> None:
    """Remove what an unfinished attempt wrote (checkpoints, events, metrics) so the job
    starts over as a new one; its manifest keeps the attempt's record, run.log its lines."""
    for path in job_dir.iterdir():
        if path.name in KEPT_ON_RESTART or path.suffix == ".log":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def check_sweep_dir(
    folder: Path, resume: str | None, overrides: list[str], rerun_failed: bool, sweeper: DictConfig
) -> None:
    """Raise UserError unless `folder` is new, or holds the jobs of the same sweep (which the
    sweep then continues: see `plan_job`) and none of them is in use; else lock it for this
    process. The sweeper's trial counts are checked first."""
    check_sweeper(sweeper)
    if resume:
        raise UserError(
            "resume= continues one run and cannot be part of a sweep (-m); continue a sweep "
            "with the command that started it and hydra.sweep.dir=<its folder>"
        )
    then = "run this command again to continue the sweep"
    refuse_if_in_use(folder, then)  # a sweep still running there
    jobs = started_jobs(folder)
    for job in jobs:  # a job resumed on its own, or one a cluster still runs
        refuse_if_in_use(folder / job, then)
    if jobs:
        check_same_sweep(folder, jobs[0], overrides)
        log.info("continuing the sweep in %s: %s", folder, describe_jobs(folder, rerun_failed))
    check_writable(folder, "hydra.sweep.dir")
    hold(folder, then)


SEARCH_MODES = ("auto", "async", "batch")  # sweeps/search.py: Search.asynchronous


def check_sweeper(sweeper: DictConfig) -> None:
    """Refuse a sweeper's trial counts that cannot work (Optuna's n_trials, n_jobs,
    max_failure_rate), before the sweep folder is made."""
    counts = {
        "n_trials": "the trials in the study in all, counting those kept from earlier starts",
        "n_jobs": "the trials that run at once",
    }
    for key, meaning in counts.items():
        value = sweeper.get(key)
        if value is not None and value < 1:
            raise UserError(f"hydra.sweeper.{key}={value} must be at least 1 ({meaning})")
    pruner = checked_pruner(sweeper.get("pruner"))
    if pruner is not None and pruner.get("name") not in PRUNERS:
        raise UserError(
            f"hydra.sweeper.pruner.name={pruner.get('name')} is not a pruner; choose one of "
            f"{', '.join(PRUNERS)}"
        )
    at_least = {
        "heartbeat_interval": (1, "seconds between a trial's heartbeats; null: none"),
        "grace_period": (1, "seconds without a heartbeat before a trial is stale"),
        "stale_retries": (0, "times a stale trial's parameters run again; null: no limit"),
        "pruner.n_startup_trials": (0, "trials that finish before any is pruned"),
        "pruner.n_warmup_steps": (0, "epochs before a trial may be pruned"),
    }
    for key, (low, meaning) in at_least.items():
        value = OmegaConf.select(sweeper, key, default=None)
        if value is not None and (not isinstance(value, int) or value < low):
            raise UserError(f"hydra.sweeper.{key}={value} must be an integer >= {low} ({meaning})")
    mode = sweeper.get("mode")
    if mode is not None and mode not in SEARCH_MODES:
        raise UserError(
            f"hydra.sweeper.mode={mode} is not a search mode; choose one of "
            f"{', '.join(SEARCH_MODES)} (auto: async where the launcher runs jobs side by side)"
        )
    rate = sweeper.get("max_failure_rate")
    if rate is not None and not 0 <= rate <= 1:
        raise UserError(
            f"hydra.sweeper.max_failure_rate={rate} must be in [0, 1] (the share of failed "
            "trials that stops the search; 1.0: never)"
        )


def started_jobs(folder: Path) -> list[str]:
    """The job folders of `folder` where a run started (even one that failed at once)."""
    if not folder.is_dir():
        return []
    jobs = sorted(p for p in folder.iterdir() if p.is_dir())
    return [job.name for job in jobs if attempt_status(job) or previous_run(job)]


def check_same_sweep(folder: Path, job: str, overrides: list[str]) -> None:
    """A sweep folder is continued only by the overrides that started it (Hydra saved them
    in multirun.yaml): other values would give other jobs under the same numbers."""
    record = folder / MULTIRUN_RECORD
    if not record.is_file():
        raise UserError(
            f"{folder} already holds runs ({job}) but no {MULTIRUN_RECORD} saying which sweep "
            "they belong to, so it cannot be continued; choose another hydra.sweep.dir"
        )
    started = [str(o) for o in OmegaConf.load(record).hydra.overrides.task]
    difference = sweep_difference(started, overrides)
    if difference:
        raise UserError(
            f"{folder} holds a sweep started with other overrides ({difference}); continue it "
            f"with the overrides it was started with ({' '.join(started)}), or choose "
            "another hydra.sweep.dir"
        )


def sweep_difference(started: list[str], now: list[str]) -> str | None:
    """What differs between two sweeps' overrides, in words; None when they are the same."""
    before = {override_key(o): o for o in started if override_key(o) not in NOT_SWEPT}
    after = {override_key(o): o for o in now if override_key(o) not in NOT_SWEPT}
    parts = []
    for key, was in before.items():
        if key not in after:
            parts.append(f"{was} is missing")
        elif after[key] != was:
            parts.append(f"{was} is now {after[key]}")
    parts += [f"{after[k]} is new" for k in after if k not in before]
    if not parts and list(before) != list(after):
        parts.append("the same overrides in another order, which numbers the jobs differently")
    return "; ".join(parts) or None
