"""A run's life around its training: how a job starts (fresh, resumed, or a job of a sweep
being continued) and how it ends (ok, interrupted, failed), as its manifest, its exit code
and TensorBoard's HParams record it.

`Job.of_hydra` describes the job Hydra started; `Job.stops_recorded()` wraps all of it and
turns a signal at any moment into the documented outcome (one line with how to continue,
the manifest `interrupted`, exit 130/143); `start_job` prepares it; `Job.recorded()` wraps
its training and records a failure; `Job.succeeded()` records a run that finished.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cifar_exp.errors import UserError
from cifar_exp.records.checkpoint import CHECKPOINT_DIR, LAST
from cifar_exp.records.commands import override, run_command
from cifar_exp.records.lock import release
from cifar_exp.records.manifest import RunManifest
from cifar_exp.records.naming import override_key
from cifar_exp.records.run_folder import close_log_files, recorded_final
from cifar_exp.runtime import distributed
from cifar_exp.runtime.signals import Interrupted, StoppedAtOnce, gate, signal_name
from cifar_exp.sweeps.continuation import MULTIRUN_RECORD, clear_attempt, plan_job
from cifar_exp.sweeps.jobs import failure_reason, threads_per_job
from cifar_exp.sweeps.summary import scored_part, sweep_metric
from cifar_exp.tracking import event_files
from cifar_exp.training.resume import prepare_resume
from cifar_exp.training.run_record import run_hparams

if TYPE_CHECKING:
    from cifar_exp.training.engine import Trainer

log = logging.getLogger("cifar_exp")

# Overrides that a printed command sets itself, or that Hydra adds on its own.
_PLACED = ("hydra.run.dir", "hydra.sweep.dir", "hydra.mode", "hydra.output_subdir")


@dataclass
class Job:
    """One run (or one job of a sweep) Hydra started, and what it returns to Hydra."""

    cfg: DictConfig
    run_dir: Path
    in_sweep: bool
    typed: list[str] = field(default_factory=list)  # this attempt's overrides, as typed
    typed_hydra: list[str] = field(default_factory=list)  # and its hydra.* ones
    manifest: RunManifest | None = None
    checkpoint: dict[str, Any] | None = None  # the state a resume continues from
    resumed_from: Path | None = None
    overrides: list[str] = field(default_factory=list)  # typed, the first start's first
    done: bool = False  # nothing to train: a finished or failed job of a continued sweep
    metric: float | None = None  # what the job returns to Hydra's sweepers
    earlier_events: list[Path] = field(default_factory=list)
    trainer: Trainer | None = None

    @classmethod
    def of_hydra(cls, cfg: DictConfig) -> Job:
        hydra_cfg = HydraConfig.get()
        return cls(
            cfg,
            Path(hydra_cfg.runtime.output_dir),
            hydra_cfg.mode == RunMode.MULTIRUN,
            list(hydra_cfg.overrides.task),
            [o for o in hydra_cfg.overrides.hydra if override_key(o) not in _PLACED],
        )

    @contextlib.contextmanager
    def stops_recorded(self) -> Iterator[None]:
        """All of the job: a signal, at whatever moment, ends it with one line saying where
        it stopped and how to continue, the manifest `interrupted` and exit 128 + the
        signal's number (signals.py). A sweep job's folder is let go when the job ends."""
        try:
            with gate.allowing():
                yield
        except Interrupted as stop:  # the first signal, during training: it saved and says
            self.stopped(stop.signum, str(stop))  # how to continue from that checkpoint
        except KeyboardInterrupt as stop:  # StoppedAtOnce: a second signal, or outside training
            signum = getattr(stop, "signum", signal.SIGINT)
            line = f"{stop} {self.where_it_stopped()} {self.how_to_continue()}"
            self.stopped(signum, line.rstrip())
        finally:
            if self.in_sweep:
                release(self.run_dir)

    def where_it_stopped(self) -> str:
        """Where training stood and which checkpoint is left, for the line of a stop."""
        if self.trainer is not None:
            where = self.trainer.progress.where()
            return f"at {where}; {self.trainer.checkpointer.describe()}."
        if self.done:  # a continued sweep's finished or failed job
            return f"as the sweep came to {self.run_dir.name}, which is kept as it was."
        last = self.run_dir / CHECKPOINT_DIR / LAST
        kept = f"{last} is as it was" if last.is_file() else "no checkpoint was written yet"
        return f"before training started; {kept}."

    def stopped(self, signum: int, line: str) -> None:
        """Record a stop by a signal and end the process with its exit code."""
        ended = self.manifest.data.get("status") if self.manifest else None
        if ended in ("ok", "failed"):  # how it ended is recorded: a signal changes nothing
            line = f"{signal_name(signum)} received after the run {ended}; {self.run_dir} is kept"
        else:
            self.record_interrupted(line)
        log.error("%s", line)
        if self.in_sweep and (command := sweep_command(self.run_dir.parent)):
            log.error("Continue the whole sweep with: %s", command)
        sys.exit(128 + signum)

    def record_interrupted(self, line: str) -> None:
        """The manifest `interrupted`; a single run stopped before its manifest recorded the
        attempt gets one now (a sweep job's folder stays as it was: it may be a kept one)."""
        if self.manifest is None and not self.in_sweep and distributed.place().is_main:
            self.manifest = RunManifest(self.run_dir)
            self.manifest.start(self.resumed_from)
        if self.manifest is not None:
            self.manifest.finish("interrupted", line)

    def how_to_continue(self) -> str:
        """The command that continues the run: for a resume, the same again; for a new run,
        resume= once it has a checkpoint, else the same command into the same folder. A
        sweep's job alone, when it has a checkpoint (else only the whole sweep continues)."""
        has_checkpoint = (self.run_dir / CHECKPOINT_DIR / LAST).is_file()
        resume = override("resume", self.run_dir)
        if self.in_sweep:
            alone = has_checkpoint and not self.done
            return f"Continue with: {run_command([resume])}" if alone else ""
        if self.cfg.get("resume") or self.resumed_from:
            others = [o for o in self.typed if override_key(o) != "resume"]
            return f"Continue with: {run_command([resume, *others, *self.typed_hydra])}"
        if has_checkpoint:
            return f"Continue with: {run_command([resume])}"
        again = [*self.typed, *self.typed_hydra, override("hydra.run.dir", self.run_dir)]
        return f"Start it again with: {run_command(again)}"

    @contextlib.contextmanager
    def recorded(self) -> Iterator[None]:
        """Record how training failed: a sweep goes on; a single run exits 1 with one line
        for a user's mistake, with the traceback for anything else. A stop by a signal goes
        on to stops_recorded."""
        try:
            yield
        except Interrupted:
            raise
        except Exception as err:
            if gate.stopping and gate.signum is not None:
                # A stop at once raised inside a library's code can surface as another error
                # there (OmegaConf restoring its flags, say): it is still the stop.
                raise StoppedAtOnce(gate.signum, second=gate.received > 1) from err
            err = self.peer_gone(err) or err
            with gate.deferred():  # the failure is recorded and said before a signal is heard
                self.manifest.finish("failed", failure_reason(err))
                self._list_failure_in_hparams()
                self.metric = job_failed(err, self.in_sweep)

    def peer_gone(self, err: Exception) -> UserError | None:
        """One line for a torchrun worker whose peer process ended (its traceback would only
        show where this one waited for it); None for any other error."""
        gone = distributed.peer_gone(err)
        if gone is None:
            return None
        rank = distributed.place().rank
        return UserError(
            f"rank {rank}: another process of this torchrun launch ended ({gone}); torchrun's "
            f"report says which and why. Rank {rank} stopped {self.where_it_stopped()} "
            f"Continue with the same torchrun command and {override('resume', self.run_dir)}"
        )

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
        if self.in_sweep and OmegaConf.select(self.cfg, "tracker.tensorboard") is not None:
            from cifar_exp.tracking.tensorboard import record_failure_before_training

            record_failure_before_training(self.run_dir, run_hparams(self.cfg, self.overrides))

    def succeeded(self, final: dict[str, Any]) -> None:
        best = "best_val_acc" if "best_val_acc" in final else "best_test_acc"
        stopped = self.trainer.stopped if self.trainer is not None else None
        with gate.deferred():
            if stopped is None:
                self.manifest.finish("ok")
            else:  # a stop rule ended it: its status, its reason, and what it records
                self.manifest.data.update(stopped.record())
                self.manifest.finish(stopped.status, stopped.reason)
            log.info(
                "final test accuracy %.4f%s (%s %.4f%s); outputs in %s",
                final["test_acc"],
                scored_part(final, "test"),
                best.replace("_", " "),
                final[best],
                f", test ECE {final['test_ece']:.4f}" if "test_ece" in final else "",
                self.run_dir,
            )
        self.metric = sweep_metric(final)


def sweep_command(sweep_dir: Path) -> str | None:
    """The command that continues the sweep in `sweep_dir`: the overrides it was started with
    (its multirun.yaml) into the same folder."""
    record = sweep_dir / MULTIRUN_RECORD
    if not record.is_file():
        return None
    overrides = OmegaConf.load(record).hydra.overrides
    task = [str(o) for o in overrides.task]
    hydra = [str(o) for o in overrides.hydra if override_key(str(o)) not in _PLACED]
    return run_command(["-m", *task, *hydra, override("hydra.sweep.dir", sweep_dir)])


def start_job(job: Job) -> bool:
    """Prepare the job Hydra started in its output folder; whether it trains. A continued
    sweep's finished or failed job is `done` (kept as it is); a resume has its checkpoint
    loaded; the manifest records the attempt."""
    here = distributed.place()
    distributed.quiet_other_ranks(here)
    if job.in_sweep:
        if continue_sweep_job(job):
            return False
        threads = 0 if job.cfg.trainer.num_threads else threads_per_job(HydraConfig.get().launcher)
        if threads:
            torch.set_num_threads(threads)
            log.info("%d CPU thread(s) for this job: jobs run side by side", threads)
    if job.cfg.resume:
        try:
            job.cfg, job.checkpoint, job.resumed_from = prepare_resume(job.cfg, job.typed)
        except UserError as err:  # refused before anything changed: the run stays as it was
            log.error("%s", err)
            if not job.in_sweep:
                sys.exit(1)
            manifest = RunManifest(job.run_dir)  # a job of a continued sweep: the others go on
            manifest.start()
            manifest.finish("failed", str(err))
            job.done = True
            return False
    job.manifest = RunManifest(job.run_dir, write=here.is_main)
    job.manifest.start(job.resumed_from)
    job.overrides = typed_overrides(job.run_dir, job.typed, job.resumed_from)
    job.earlier_events = event_files(job.run_dir)
    return True


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
            final = recorded_final(job.run_dir)
            job.metric = None if final is None else sweep_metric(final)  # None: pruned
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
