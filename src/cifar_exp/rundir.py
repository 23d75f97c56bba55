"""The run directory: checked and locked before Hydra writes into it, and described by a
manifest.

`RunDirGuard` (a Hydra callback, see conf/config.yaml) stops a run before anything is
written when its directory is in use by another process (lock.py), is not writable, has no
room for its checkpoints, or already holds a run (a finished run is never overwritten;
continue one with `resume=`); then it locks the folder for this process. `OutputDirGuard`
does the writable check for eval and predict, which only read runs and lock nothing.
`RunManifest` records in every run directory when it started and ended, how it ended, and
where it ran.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_exp import distributed
from cifar_exp.build import check_before_start
from cifar_exp.checkpoint import BEST, CHECKPOINT_DIR, LAST, check_space, find_checkpoint
from cifar_exp.commands import override, run_command
from cifar_exp.config import is_plumbing, register_schemas
from cifar_exp.errors import UserError
from cifar_exp.lock import LOCK_FILE, FolderInUse, hold, holder_of
from cifar_exp.manifest import MANIFEST_FILE, read_manifest
from cifar_exp.naming import MAX_DIRNAME, NOT_SWEPT, job_dirname, override_key
from cifar_exp.pruning import PRUNERS
from cifar_exp.signals import gate

log = logging.getLogger("cifar_exp")
T = TypeVar("T")

MULTIRUN_RECORD = "multirun.yaml"  # the sweep's config, saved by Hydra's sweepers (and ours)
# What a job's folder keeps when the job starts over: the record of earlier attempts, and
# the lock its process holds.
KEPT_ON_RESTART = (".hydra", MANIFEST_FILE, LOCK_FILE)
# What Hydra's override grammar does not take unquoted in a value (e.g. "=", ",", brackets).
_UNSAFE = re.compile(r"[^\w.+@%-]")


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (<run>/checkpoints/last.pt -> <run>)."""
    in_run = checkpoint.parent.name == CHECKPOINT_DIR
    return checkpoint.parent.parent if in_run else checkpoint.parent


def resumed_run_dir(resume: str | None, default: str) -> str:
    """Resolver for hydra.run.dir: a resumed run continues in its own directory."""
    if not resume:
        return default
    try:
        return str(run_dir_of(find_checkpoint(resume)))
    except UserError:
        return default  # RunDirGuard reports the bad path before anything is written


def run_name(name: str | None, overrides: ListConfig | list[str]) -> str:
    """The readable part of a single run's folder, and so of its name in TensorBoard:
    `name=...` as given, else the overrides typed that change what is trained, joined like
    model-resnet+optimizer.lr-0.003, else "defaults".

    Only characters Hydra accepts unquoted in a value are kept (others become "-"), so the
    folder can be typed as is in resume=... and ckpt=..."""
    if not name:
        shown = [o.replace("=", "-", 1) for o in overrides if not is_plumbing(override_key(o))]
        name = "+".join(shown) or "defaults"
    return _UNSAFE.sub("-", name)[:MAX_DIRNAME]


def setup_hydra() -> None:
    """The one registration step every entrypoint takes before Hydra composes its config
    (and a launcher's worker before it runs a job, see run.py): the config schemas in
    Hydra's ConfigStore and our resolvers."""
    register_schemas()
    register_resolvers()


def register_resolvers() -> None:
    """The resolvers conf/config.yaml's hydra.run.dir and hydra.sweep.dir use."""
    # Under torchrun these are rank 0's, so all ranks share one directory. Cached like Hydra's
    # ${now:}: the cache travels with the config to launcher workers, so every job of a sweep
    # resolves the sweep folder to the starting process's.
    OmegaConf.register_new_resolver(
        "launch_time", distributed.launch_time, replace=True, use_cache=True
    )
    OmegaConf.register_new_resolver("pid", distributed.launch_pid, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("resumed_run_dir", resumed_run_dir, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("hydra_subdir", hydra_subdir, replace=True)
    OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)


def hydra_subdir(resume: str | None, mode: Any, output_dir: str) -> str | None:
    """hydra.output_subdir: a resumed run, and a sweep job that continues an earlier attempt
    (the same sweep, checked by RunDirGuard), keep the .hydra/ of their first start; the
    manifest records each attempt. A finished job's folder stays untouched."""
    if resume:
        return None
    if str(mode).endswith("MULTIRUN") and (Path(output_dir) / ".hydra").is_dir():
        return None
    return ".hydra"


def previous_run(folder: Path) -> str | None:
    """What in `folder` shows that a run worth keeping lives there, if anything.

    A run that failed before its first epoch (e.g. on a config value), or was stopped by a
    signal before its first checkpoint, left nothing worth keeping; a new run may start
    there, and its manifest keeps the earlier attempt.
    """
    status = attempt_status(folder)
    saved = [name for name in (CHECKPOINT_DIR, "metrics.json") if _holds(folder / name)]
    if status not in (None, "failed") and (status != "interrupted" or saved):
        return f"{MANIFEST_FILE} (status: {status})"
    return saved[0] if saved else None


def _holds(path: Path) -> bool:
    """A file, or a checkpoints folder with a checkpoint in it."""
    if path.name == CHECKPOINT_DIR:
        return any((path / name).is_file() for name in (LAST, BEST))
    return path.exists()


def attempt_status(job_dir: Path) -> str | None:
    """How the latest attempt at the run in `job_dir` ended (its manifest's status; 'running'
    when it was killed), or None when no run started there."""
    manifest = read_manifest(job_dir)
    return None if manifest is None else str(manifest.get("status", "unreadable"))


def plan_job(job_dir: Path, rerun_failed: bool) -> str:
    """What a sweep job does about an earlier attempt in its folder: 'finished' (keep it
    untouched), 'failed' (keep it, unless rerun_failed), 'resume' (from its last.pt) or
    'start' (from scratch)."""
    status = attempt_status(job_dir)
    # A pruned job ended as its search asked (pruning.py): continuing keeps it pruned.
    if status in ("ok", "pruned") and (job_dir / "metrics.json").is_file():
        return "finished"
    if status == "failed":
        return "start" if rerun_failed else "failed"
    if status in ("running", "interrupted") and (job_dir / CHECKPOINT_DIR / LAST).is_file():
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


def close_log_files(run_dir: Path) -> None:
    """Detach the log files Hydra opened in `run_dir` from the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (
            isinstance(handler, logging.FileHandler)
            and Path(handler.baseFilename).parent == run_dir
        ):
            root.removeHandler(handler)
            handler.close()


def check_writable(folder: Path, key: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"cannot write to the output directory {folder} ({err.strerror or err}); fix its "
            f"permissions or free space, or choose another folder with {key}=..."
        ) from err


def check_run_dir(folder: Path, cfg: DictConfig) -> None:
    """Raise UserError when a run must not start in `folder`; else lock it for this process.
    Nothing in the folder changes before the lock is taken (a finished run's folder is only
    read)."""
    resume = cfg.get("resume")
    if resume:
        checkpoint = find_checkpoint(resume)
        target = run_dir_of(checkpoint).resolve()
        if folder.resolve() != target:
            raise UserError(
                f"resume continues in the run's own directory {target}; drop hydra.run.dir={folder}"
            )
        then = "run this command again: the run continues from its newest checkpoint"
        refuse_if_in_use(folder, then)
        check_space(folder, checkpoint.stat().st_size)
    else:
        then = f"continue that run with: {run_command([override('resume', folder)])}"
        if folder.exists():
            refuse_if_in_use(folder, f"choose another hydra.run.dir, or {then}")
            refuse_if_holds_a_run(folder)
        check_before_start(cfg, nearest_existing(folder))
    check_writable(folder, "hydra.run.dir")
    hold(folder, then)
    if not resume:  # again: another process may have run here since the look above
        refuse_if_holds_a_run(folder)


def refuse_if_in_use(folder: Path, then: str) -> None:
    holder = holder_of(folder)
    if holder is not None:
        raise FolderInUse(folder, holder, then)


def refuse_if_holds_a_run(folder: Path) -> None:
    if found := previous_run(folder):
        resume = run_command([override("resume", folder)])
        raise UserError(
            f"{folder} already holds a run ({found}); a run directory is never overwritten. "
            f"Choose another hydra.run.dir, or continue that run with: {resume}"
        )


def nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


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


def check_sweeper(sweeper: DictConfig) -> None:
    """Refuse a sweeper's trial counts that cannot work (Optuna's n_trials, n_jobs,
    max_failure_rate), before the sweep folder is made."""
    counts = {
        "n_trials": "the trials in the study in all, counting those kept from earlier starts",
        "n_jobs": "the trials handed to the launcher at once",
    }
    for key, meaning in counts.items():
        value = sweeper.get(key)
        if value is not None and value < 1:
            raise UserError(f"hydra.sweeper.{key}={value} must be at least 1 ({meaning})")
    pruner = sweeper.get("pruner")
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


class RunDirGuard(Callback):
    """Checks and locks the run (or sweep, and each job's) directory before Hydra creates or
    writes anything in it. From here until the job starts, a signal waits (signals.py)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        gate.defer()
        self._check(check_run_dir, config.hydra.run.dir, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        gate.defer()
        self._check(
            check_sweep_dir,
            config.hydra.sweep.dir,
            config.get("resume"),
            list(config.hydra.overrides.task),
            bool(config.get("rerun_failed")),
            config.hydra.sweeper,
        )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sweep job's folder: locked unless the job keeps it as it is (finished, or
        failed and not rerun), which only reads it; let go when the job ends
        (lifecycle.Job.stops_recorded). Hydra wrote a new job's .hydra/ first; an existing
        job's it leaves alone (hydra_subdir)."""
        if config.hydra.mode != RunMode.MULTIRUN or not distributed.place().is_main:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if plan_job(job_dir, bool(config.get("rerun_failed"))) in ("finished", "failed"):
            return
        try:
            hold(job_dir, "run this command again to continue the sweep")
        except UserError as err:
            close_log_files(job_dir)  # the refusal goes to the terminal, not into its run.log
            log.error("%s", err)
            sys.exit(1)

    @staticmethod
    def _check(check: Any, folder: str, *args: Any) -> None:
        if not distributed.place().is_main:
            return  # rank 0 checks the folder all ranks share, and may have filled it already
        try:
            check(Path(folder).absolute(), *args)
        except UserError as err:
            log.error("%s", err)
            sys.exit(1)


def in_output_dir(task: Callable[[DictConfig, Path], T], cfg: DictConfig) -> T:
    """The body of the tools beside the run (eval, predict, inspect, lr_find): `task` given
    the config and the output folder Hydra made for it (OutputDirGuard checked it); a
    UserError ends the process with its one line and exit code 1."""
    try:
        return task(cfg, Path(HydraConfig.get().runtime.output_dir))
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)


class OutputDirGuard(Callback):
    """eval's and predict's output folder: writable, checked before Hydra makes it. They only
    read the run they are given, so they lock nothing and run beside its training."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        RunDirGuard._check(check_writable, config.hydra.run.dir, "hydra.run.dir")
