"""A run's life around its training: how a job starts (fresh, resumed, or a job of a sweep
being continued) and how it ends (ok, interrupted, failed), as its manifest, its exit code
and TensorBoard's HParams record it.

`start_job` prepares one; `Job.recorded()` wraps its training and turns every way it can
end into the documented outcome; `Job.succeeded()` records a run that finished.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cifar_exp import distributed
from cifar_exp.build import run_hparams
from cifar_exp.errors import UserError
from cifar_exp.manifest import RunManifest
from cifar_exp.resume import prepare_resume
from cifar_exp.rundir import clear_attempt, plan_job
from cifar_exp.signals import Interrupted
from cifar_exp.summary import scored_part, sweep_metric
from cifar_exp.sweep import failure_reason, threads_per_job
from cifar_exp.tracking import event_files, record_failure_before_training

log = logging.getLogger("cifar_exp")


@dataclass
class Job:
    """One run (or one job of a sweep) about to train, and what it returns to Hydra."""

    cfg: DictConfig
    run_dir: Path
    in_sweep: bool
    manifest: RunManifest | None = None
    checkpoint: dict[str, Any] | None = None  # the state a resume continues from
    resumed_from: Path | None = None
    overrides: list[str] = field(default_factory=list)  # typed, the first start's first
    done: bool = False  # nothing to train: a finished or failed job of a continued sweep
    metric: float | None = None  # what the job returns to Hydra's sweepers
    earlier_events: list[Path] = field(default_factory=list)

    @contextlib.contextmanager
    def recorded(self) -> Iterator[None]:
        """Record how training ended: interrupted (exit 130/143 with how to continue),
        failed (a sweep goes on; a single run exits 1 with one line for a user's mistake,
        with the traceback for anything else)."""
        try:
            yield
        except Interrupted as stop:
            self.manifest.finish("interrupted", str(stop))
            log.error("%s", stop)
            if self.in_sweep:
                log.error(
                    "continue the whole sweep with its command and hydra.sweep.dir=%s",
                    self.run_dir.parent,
                )
            sys.exit(stop.exit_code)
        except KeyboardInterrupt:
            self.manifest.finish("interrupted", "KeyboardInterrupt (stopped at once)")
            raise
        except Exception as err:
            self.manifest.finish("failed", failure_reason(err))
            self._list_failure_in_hparams()
            self.metric = job_failed(err, self.in_sweep)

    def _list_failure_in_hparams(self) -> None:
        """A sweep job that failed before training wrote anything is still listed in HParams,
        as failed, so the sweep's table has every job. A single run refused that way (it said
        why and exited 1) has nothing to compare: it writes no run into TensorBoard's lists.
        Either way the events of an earlier failed attempt in the folder go."""
        untouched = event_files(self.run_dir) == self.earlier_events
        if self.resumed_from is not None or not distributed.place().is_main or not untouched:
            return
        for path in self.earlier_events:
            path.unlink()
        if self.in_sweep:
            record_failure_before_training(self.run_dir, run_hparams(self.cfg, self.overrides))

    def succeeded(self, final: dict[str, Any]) -> None:
        best = "best_val_acc" if "best_val_acc" in final else "best_test_acc"
        log.info(
            "final test accuracy %.4f%s (%s %.4f); outputs in %s",
            final["test_acc"],
            scored_part(final, "test"),
            best.replace("_", " "),
            final[best],
            self.run_dir,
        )
        self.manifest.finish("ok")
        self.metric = sweep_metric(final)


def start_job(cfg: DictConfig) -> Job:
    """The job Hydra started in its output folder: a continued sweep's finished or failed
    job is `done`; a resume has its checkpoint loaded; the manifest records the attempt."""
    hydra_cfg = HydraConfig.get()
    here = distributed.place()
    distributed.quiet_other_ranks(here)
    job = Job(cfg, Path(hydra_cfg.runtime.output_dir), hydra_cfg.mode == RunMode.MULTIRUN)
    if job.in_sweep:
        if continue_sweep_job(job):
            return job
        threads = 0 if cfg.trainer.num_threads else threads_per_job(hydra_cfg.launcher)
        if threads:
            torch.set_num_threads(threads)
            log.info("%d CPU thread(s) for this job: jobs run side by side", threads)
    typed = list(hydra_cfg.overrides.task)
    if cfg.resume:
        try:
            job.cfg, job.checkpoint, job.resumed_from = prepare_resume(cfg, typed)
        except UserError as err:  # refused before anything changed: the run stays as it was
            log.error("%s", err)
            if not job.in_sweep:
                sys.exit(1)
            manifest = RunManifest(job.run_dir)  # a job of a continued sweep: the others go on
            manifest.start()
            manifest.finish("failed", str(err))
            job.done = True
            return job
    job.manifest = RunManifest(job.run_dir, write=here.is_main)
    job.manifest.start(job.resumed_from)
    job.overrides = typed_overrides(job.run_dir, typed, job.resumed_from)
    job.earlier_events = event_files(job.run_dir)
    return job


def continue_sweep_job(job: Job) -> bool:
    """A sweep job facing an earlier attempt in its folder (the sweep is being continued):
    True after marking a finished job (with its metric) or a failed one `done`, to keep it as
    it is; else False, after pointing cfg.resume at its checkpoint or clearing the attempt."""
    step = plan_job(job.run_dir, job.cfg.rerun_failed)
    if step in ("finished", "failed"):
        # Its folder is the job's record as it ended: nothing more goes into its run.log, from
        # us or from the launcher (submitit logs the job's end).
        close_log_files(job.run_dir)
        if step == "finished":
            metrics = json.loads((job.run_dir / "metrics.json").read_text())
            job.metric = sweep_metric(metrics["final"])
        job.done = True
        return True
    if step == "resume":
        job.cfg.resume = str(job.run_dir)
    else:
        clear_attempt(job.run_dir)
    return False


def typed_overrides(run_dir: Path, now: list[str], resumed_from: Path | None) -> list[str]:
    """The overrides typed for this run; for a resumed run, those of its first start (which
    its .hydra/ keeps) before this attempt's."""
    first = run_dir / ".hydra" / "overrides.yaml"
    earlier = list(OmegaConf.load(first)) if resumed_from and first.exists() else []
    return list(dict.fromkeys([*earlier, *now]))  # a resumed sweep job repeats its own


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


def job_failed(err: Exception, in_sweep: bool) -> None:
    """After a run failed (its manifest says why): a sweep goes on, a single run exits 1 with
    one line for a user's mistake, or with the traceback for anything else."""
    if in_sweep:
        # One bad job must not end the sweep: its manifest says why, the others run. None,
        # not NaN: the Optuna sweeper marks a trial without a number as failed and goes on,
        # while a NaN makes it pass values to a failed trial, which Optuna rejects.
        if isinstance(err, UserError):
            log.error("job failed, the sweep goes on: %s", failure_reason(err))
        else:
            log.exception("job failed, the sweep goes on: %s", failure_reason(err))
        return None
    if isinstance(err, UserError):
        log.error("%s", err)
        sys.exit(1)
    raise err
