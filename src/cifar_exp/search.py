"""The Optuna search behind `hparams_search=optuna`: a study stored on disk that continues.

Each trial is a job of the sweep folder, numbered by its trial number, so a continued search
adds folders beside the ones it keeps. The study lives in a database (SQLite in the sweep
folder unless `storage` names another), so a search stopped by a kill, a time limit or a
preemption continues to `n_trials` when the same command runs again into the same folder:
finished trials are kept, and the trials it left running are run again (their jobs resume
from their last checkpoint, see lifecycle.continue_sweep_job). Several machines that reach one
database (PostgreSQL, MySQL) share a study: each asks for trials until the study has
`n_trials`.

Hydra finds the sweeper through hydra_plugins/cifar_exp_optuna, which imports this module
only when a search starts: Optuna is an optional dependency (the `sweeps` extra).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)
from optuna.trial import TrialState

log = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
RESULTS_FILE = "optimization_results.yaml"
# Trial attributes: which sweep folder runs the trial, and the overrides of its job.
SWEEP_DIR_ATTR = "sweep_dir"
OVERRIDES_ATTR = "overrides"


@dataclass(frozen=True)
class TrialJob:
    """A trial and the overrides of the job that runs it."""

    number: int
    overrides: tuple[str, ...]


def distribution(override: Override) -> BaseDistribution:
    """choice(...) and range(...) -> a categorical of their values; interval(a, b) -> floats
    (Hydra reads interval bounds as floats), on a log scale when tagged `log`."""
    if override.is_interval_sweep():
        sweep = override.value()
        return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def search_space(overrides: Sequence[str]) -> dict[str, BaseDistribution | str]:
    """Each key's distribution (a sweep) or fixed value, in order; a later override wins."""
    space: dict[str, BaseDistribution | str] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        space.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            space[key] = override.get_value_element_as_str()
    return space


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """The study's database: `storage` when given, else a SQLite file in the sweep folder."""
    return storage or f"sqlite:///{(sweep_dir / STUDY_FILE).absolute()}"


def consecutive(jobs: Sequence[TrialJob]) -> Iterator[list[TrialJob]]:
    """Runs of consecutive trial numbers: a launcher numbers the jobs of one launch from its
    first. Other machines sharing the study can take the numbers in between."""
    run: list[TrialJob] = []
    for job in jobs:
        if run and job.number != run[-1].number + 1:
            yield run
            run = []
        run.append(job)
    if run:
        yield run


def trial_value(ret: JobReturn) -> float | None:
    """What a job returned, or None when it failed (a job returns None for a failed run)."""
    try:
        value = ret.return_value
    except Exception as err:  # the launcher re-raises what the job raised
        log.warning("trial failed: %s: %s", type(err).__name__, err)
        return None
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


class Search:
    """One sweep folder's share of an Optuna study."""

    def __init__(self, options: DictConfig, launcher: Launcher, sweep_dir: Path) -> None:
        self.options = options
        self.launcher = launcher
        self.sweep_dir = sweep_dir.absolute()
        self.failed = 0
        self.ran = 0

    def open_study(self, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        study = optuna.create_study(
            study_name=self.options.study_name,
            storage=storage_url(self.options.storage, self.sweep_dir),
            sampler=sampler,
            direction=self.options.direction,
            load_if_exists=True,
        )
        if study.trials:
            # A seeded sampler would draw its first (random start-up) trials again: a study
            # that continues gets fresh random numbers instead.
            sampler.reseed_rng()
            log.info("continuing study %s: %d trial(s) kept", study.study_name, len(study.trials))
        return study

    def run(self, study: optuna.Study, arguments: Sequence[str]) -> None:
        """Run the trials this folder left running, then new ones until the study is full."""
        params = self.options.params or {}
        space = search_space([f"{k}={v}" for k, v in params.items()] + list(arguments))
        left = self.left_running(study)
        if left:
            log.info("running again the %d trial(s) this sweep left running", len(left))
            self.launch(study, left)
        if len(study.trials) >= self.options.n_trials:
            log.info(
                "the study has %d trial(s), hydra.sweeper.n_trials=%d: no new trial; ask for "
                "more with a larger hydra.sweeper.n_trials",
                len(study.trials),
                self.options.n_trials,
            )
        while (to_go := self.options.n_trials - len(study.trials)) > 0 and self.may_go_on():
            batch = [self.new_trial(study, space) for _ in range(min(self.options.n_jobs, to_go))]
            self.launch(study, batch)
        self.write_results(study)

    def left_running(self, study: optuna.Study) -> list[TrialJob]:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [
            TrialJob(t.number, tuple(t.user_attrs[OVERRIDES_ATTR]))
            for t in running
            if t.user_attrs.get(SWEEP_DIR_ATTR) == str(self.sweep_dir)
        ]

    def new_trial(self, study: optuna.Study, space: dict[str, BaseDistribution | str]) -> TrialJob:
        searched = {k: d for k, d in space.items() if isinstance(d, BaseDistribution)}
        trial = study.ask(searched)
        values = {**space, **trial.params}
        overrides = tuple(f"{key}={values[key]}" for key in space)
        trial.set_user_attr(SWEEP_DIR_ATTR, str(self.sweep_dir))
        trial.set_user_attr(OVERRIDES_ATTR, list(overrides))
        return TrialJob(trial.number, overrides)

    def launch(self, study: optuna.Study, jobs: Sequence[TrialJob]) -> None:
        for run in consecutive(jobs):
            returns = self.launcher.launch(
                [j.overrides for j in run], initial_job_idx=run[0].number
            )
            for job, ret in zip(run, returns, strict=True):
                value = trial_value(ret)
                self.ran += 1
                if value is None:
                    self.failed += 1
                    study.tell(job.number, state=TrialState.FAIL)
                else:
                    study.tell(job.number, value)

    def may_go_on(self) -> bool:
        """False once more trials failed than max_failure_rate allows (1.0: never)."""
        if self.ran and self.failed / self.ran > self.options.max_failure_rate:
            log.error(
                "%d of %d trials failed, more than hydra.sweeper.max_failure_rate=%s allows: "
                "the search stops (see the summary for why they failed)",
                self.failed,
                self.ran,
                self.options.max_failure_rate,
            )
            return False
        return True

    def write_results(self, study: optuna.Study) -> None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            log.warning("no trial finished: no %s written", RESULTS_FILE)
            return
        best = study.best_trial
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "best_trial": best.number,
            "best_params": best.params,
            "best_value": best.value,
        }
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / RESULTS_FILE)
        log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
