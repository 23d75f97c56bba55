"""Multirun plumbing: readable job folder names, failure records, CPU threads per parallel job,
and the Hydra callback that writes the sweep summary when the sweep ends.

Launchers run jobs in other processes (joblib workers, submitit, Slurm nodes), so a job
reports through files in its own folder (metrics.json, manifest.json) and the callback, which
runs where the sweep was started, reads them back from the sweep folder.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cifar_exp.errors import UserError
from cifar_exp.records.commands import command
from cifar_exp.records.naming import SWEPT_KEYS_ENV
from cifar_exp.sweeps.summary import Job, find_jobs, write_summary
from cifar_exp.tracking.mlflow_writer import end_sweep_runs

log = logging.getLogger(__name__)


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """Keys with several values on the command line, plus a sweeper's search space."""
    parsed = OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}
    return keys + [key for key in params if key not in keys]


def failure_reason(err: BaseException) -> str:
    """One line saying why a job failed: a UserError's message, else the exception's type too."""
    lines = str(err).strip().splitlines()
    first = lines[0] if lines else ""
    return first if isinstance(err, UserError) else f"{type(err).__name__}: {first}"


def available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_job(launcher: DictConfig | dict[str, Any]) -> int | None:
    """CPU threads for one job when a launcher runs several at once, so jobs x threads <= cores.

    joblib runs `n_jobs` jobs side by side (-1: one per core); submitit gives each job
    `cpus_per_task` cores. None: the launcher runs one job at a time, keep torch's default.
    """
    cpus_per_task = launcher.get("cpus_per_task")
    if cpus_per_task:
        return int(cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return None
    cpus = available_cpus()
    parallel = cpus if n_jobs < 0 else n_jobs
    return max(1, cpus // max(1, parallel))


class SweepOutcome:
    """Why a sweeper stopped a sweep early, for the callback that ends it: the sweeper and
    Hydra's callbacks run in one process, and Hydra passes nothing from one to the other."""

    stopped_because: str | None = None


outcome = SweepOutcome()


class SweepSummary(Callback):
    """Names job folders by the swept keys; writes summary.csv/summary.md when a sweep ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        outcome.stopped_because = None  # a sweep before it in this process (a caller's, a test's)
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config.hydra))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEPT_KEYS_ENV, None)
        sweep_dir = Path(config.hydra.sweep.dir)
        end_sweep_runs(sweep_dir)
        table = write_summary(sweep_dir)
        if table is None:
            log.warning("no job folders in %s: no summary written", sweep_dir)
            self.exit_if_nothing_succeeded([])
            return
        # The table is the sweep's answer for the user, not a diagnostic: print it plainly.
        print(f"\n{table}\nSummary: {sweep_dir / 'summary.md'}, {sweep_dir / 'summary.csv'}")
        print(f"Plot: {command('cifar_exp.report', [str(sweep_dir)])}", flush=True)
        # Its own --logdir: TensorBoard then names each job by its folder alone (0_..., 1_...).
        print(f"Compare: tensorboard --logdir {shlex.quote(str(sweep_dir))}", flush=True)
        self.exit_if_nothing_succeeded(find_jobs(sweep_dir))

    @staticmethod
    def exit_if_nothing_succeeded(jobs: list[Job]) -> None:
        """A sweep with a finished job exits 0 (the summary says which failed); one where
        every job failed, or that its sweeper stopped early, exits 1 with one line."""
        if outcome.stopped_because:
            log.error("the sweep stopped: %s", outcome.stopped_because)
            sys.exit(1)
        if jobs and not any(job.ok or job.pruned for job in jobs):
            reasons = {job.status for job in jobs}
            why = f": {reasons.pop()}" if len(reasons) == 1 else " (see the status column above)"
            log.error("every job of the sweep failed (%d job(s))%s", len(jobs), why)
            sys.exit(1)
