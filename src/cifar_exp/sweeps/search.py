"""The Optuna search behind `hparams_search=optuna`: a study stored on disk that continues.

Each trial is a job of the sweep folder, numbered by its trial number, so a continued search
adds folders beside the ones it keeps. The study lives in a database (SQLite in the sweep
folder unless `storage` names another), so a search stopped by a kill, a time limit or a
preemption continues to `n_trials` when the same command runs again into the same folder:
finished trials are kept, and the trials it left running are run again (their jobs resume
from their last checkpoint, see lifecycle.continue_sweep_job). Several machines that reach one
database (PostgreSQL, MySQL) share a study: each asks for trials until the study has
`n_trials`. While a sweep runs a trial it beats for it in the study (Optuna's heartbeat); a
trial whose beat stopped longer than `grace_period` ago (its machine was killed) is failed by
the next sweep that looks, and its parameters run again as a new trial, which resumes from
the stale trial's last.pt when that folder is reachable from here.

Hydra finds the sweeper through hydra_plugins/cifar_exp_optuna, which imports this module
only when a search starts: Optuna is an optional dependency (the `sweeps` extra).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import shutil
import threading
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
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
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.engine import make_url

from cifar_exp.components.pruning import STUDY_FILE, build_pruner, storage_url
from cifar_exp.errors import UserError
from cifar_exp.records.manifest import read_manifest
from cifar_exp.records.naming import job_dirname

__all__ = ["STUDY_FILE", "Search", "storage_url"]

# Heartbeats and the stale-trial callback are "experimental" in Optuna since 2.8; they are
# what reclaims a killed machine's trials, and the warning says nothing a user can act on.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Optuna expects heartbeats from study.optimize only; this sweeper beats itself (Heartbeat).
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"
# Trial attributes: which sweep folder runs the trial, and the overrides of its job.
SWEEP_DIR_ATTR = "sweep_dir"
OVERRIDES_ATTR = "overrides"


@dataclass(frozen=True)
class TrialJob:
    """A trial and the overrides of the job that runs it."""

    number: int
    overrides: tuple[str, ...]
    trial_id: int | None = None  # the storage's id, for heartbeats


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


# What a storage URL's dialect needs installed, for the line that says so. SQLAlchemy 2.1
# reads postgresql:// as psycopg 3 (not psycopg2).
PSYCOPG = "pip install 'psycopg[binary]' (or the sweeps extra: pip install -e '.[sweeps]')"
DRIVERS = {
    "postgresql": PSYCOPG,
    "postgresql+psycopg": PSYCOPG,
    "postgresql+psycopg2": "pip install psycopg2-binary, or write postgresql:// to use psycopg 3 "
    "(the sweeps extra installs it)",
    "mysql": "pip install PyMySQL and name it in the URL: mysql+pymysql://...",
    "mysql+pymysql": "pip install PyMySQL",
}


def shown_url(url: str) -> str:
    """The URL as a message may show it: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(url: str, options: DictConfig) -> RDBStorage:
    """The study's database, reached once here so that a URL that cannot work is one line
    naming hydra.sweeper.storage before any trial starts: a driver that is missing, a server
    that does not answer, a user or password it refuses."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=options.get("stale_retries"))
    interval = options.get("heartbeat_interval")
    key = f"hydra.sweeper.storage={shown_url(url)}"
    try:
        for attempt in range(3):
            try:
                return RDBStorage(
                    url,
                    heartbeat_interval=interval or None,
                    grace_period=options.get("grace_period") if interval else None,
                    heartbeat_stale_trial_callback=retry if interval else None,
                    engine_kwargs=engine_options(url),
                )
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # Two searches starting at once on a new database both create Optuna's
                # tables; the one that lost finds them made when it tries again.
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")
    except ImportError as err:
        scheme = make_url(url).drivername
        fix = DRIVERS.get(scheme, f"install the database driver SQLAlchemy uses for {scheme}://")
        raise UserError(f"{key}: no driver for {scheme}:// is installed ({err}); {fix}") from err
    except sqlalchemy.exc.ArgumentError as err:
        raise UserError(f"{key} is not a database URL ({err}); see docs/sweeps.md") from err
    except sqlalchemy.exc.OperationalError as err:
        raise UserError(f"{key}: {database_problem(err)}") from err
    except sqlalchemy.exc.DatabaseError as err:  # after OperationalError, its subclass
        raise UserError(f"{key}: {damaged_database(url, err)}") from err


def damaged_database(url: str, err: sqlalchemy.exc.DatabaseError) -> str:
    """What to do about a database the driver cannot read (a SQLite file of other bytes,
    one cut short by a full disk or a copy that stopped)."""
    message = " ".join(str(err.orig or err).split())
    path = sqlite_file(url)
    if path is None:
        return f"the database cannot be read ({message}); check it with the server's tools"
    return (
        f"{path} is damaged ({message}); restore it from a copy, or move it away to start "
        "the study afresh (the jobs' folders stay)"
    )


def sqlite_file(url: str) -> Path | None:
    """The file of a sqlite:/// URL; None for a server or an in-memory database."""
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def engine_options(url: str) -> dict[str, Any]:
    """A server that does not answer is said within seconds, not after the OS's timeout."""
    if make_url(url).get_backend_name() in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def database_problem(err: sqlalchemy.exc.OperationalError) -> str:
    """What to check, from the driver's message."""
    message = " ".join(str(err.orig or err).split())
    lowered = message.lower()
    if "password" in lowered or "authentication" in lowered or "access denied" in lowered:
        return f"the server refused the user or password ({message}); check both in the URL"
    if "does not exist" in lowered or "unknown database" in lowered:
        return f"no such database on the server ({message}); create it, e.g. createdb"
    if "connect" in lowered or "timeout" in lowered or "refused" in lowered:
        return (
            f"the database server does not answer ({message}); check that it runs and that "
            "the host and port in the URL reach it"
        )
    return f"the database cannot be used ({message})"


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


def counted(study: optuna.Study) -> int:
    """The trials that count towards n_trials: all but the stale ones whose parameters
    another trial runs again."""
    trials = study.get_trials(deepcopy=False)
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(t.number not in replaced for t in trials)


def job_folder(sweep_dir: Path, number: int) -> Path | None:
    """Trial `number`'s job folder in `sweep_dir` (named `<number>_<overrides>`), if any."""
    found = sorted(sweep_dir.glob(f"{number}_*")) if sweep_dir.is_dir() else []
    return found[0] if found else None


def failure_before_training(folder: Path | None) -> str | None:
    """The one-line reason a job failed before its first epoch, from its folder; None when
    it trained, finished, or left no record."""
    if folder is None:
        return None
    manifest = read_manifest(folder) or {}
    if manifest.get("status") != "failed" or (folder / "checkpoints").exists():
        return None
    reason = (manifest.get("reason") or "").strip().splitlines()
    return reason[0] if reason else None


def was_pruned(folder: Path | None) -> bool:
    """Whether the job in `folder` ended pruned (its manifest's status)."""
    return folder is not None and (read_manifest(folder) or {}).get("status") == "pruned"


def asking_key(study_name: str) -> int:
    """The server lock's key for a study: the same on every machine."""
    return zlib.crc32(f"cifar_exp search {study_name}".encode())


# The database server's own locks (so every machine is excluded): taken, then released.
SERVER_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
    "mysql": ("SELECT GET_LOCK(CAST(:key AS CHAR), -1)", "SELECT RELEASE_LOCK(CAST(:key AS CHAR))"),
}


@contextlib.contextmanager
def asking(storage: RDBStorage, study_name: str) -> Iterator[None]:
    """Held while a sweep counts the study's trials and asks for new ones, so that two
    sweeps sharing the study cannot both see room for the last trial and ask for it: on
    PostgreSQL an advisory lock and on MySQL a named lock (SERVER_LOCKS), on SQLite a file
    lock beside the database (<file>.lock). Other databases are not locked: two sweeps may
    then ask for one trial more than n_trials."""
    url = storage.engine.url
    key = {"key": asking_key(study_name)}
    if url.get_backend_name() in SERVER_LOCKS:
        lock, unlock = SERVER_LOCKS[url.get_backend_name()]
        with storage.engine.connect() as conn:
            conn.execute(text(lock), key)
            try:
                yield
            finally:
                conn.execute(text(unlock), key)
                conn.commit()
    elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with open(f"{url.database}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
    else:
        yield


class Heartbeat:
    """Beats in the study for the trials this sweep runs, from a thread of the sweep's own
    process: the beat stops when the machine, or the sweep, is killed. (Optuna beats only
    inside study.optimize; this sweeper asks and tells.)"""

    def __init__(self, storage: RDBStorage) -> None:
        self.storage = storage
        self.trial_ids: set[int] = set()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def beat(self, trial_id: int) -> None:
        if self.storage.get_heartbeat_interval() is None:
            return
        self.trial_ids.add(trial_id)
        self.storage.record_heartbeat(trial_id)
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="optuna-heartbeat", daemon=True)
            self.thread.start()

    def done(self, trial_id: int) -> None:
        self.trial_ids.discard(trial_id)

    def _loop(self) -> None:
        interval = self.storage.get_heartbeat_interval() or 60
        while not self.stop.wait(interval):
            for trial_id in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # a database hiccup: the next beat tries again
                    log.warning("could not record the heartbeat of a trial: %s", err)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


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
        # Why the first trials failed before training, while they all fail that way.
        self.first_failures: list[str] = []
        self.stopped_because: str | None = None
        self.heartbeat: Heartbeat | None = None
        self.storage: RDBStorage | None = None
        self.searched: list[str] = []  # the keys the search draws values for
        self.mode = "batch"  # or async (asynchronous())
        # Held by the asynchronous search's workers around asking and counting.
        self.lock = threading.RLock()

    def open_study(self, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        self.mode = "async" if self.asynchronous() else "batch"
        storage = open_storage(storage_url(self.options.storage, self.sweep_dir), self.options)
        self.storage = storage
        self.heartbeat = Heartbeat(storage)
        study = optuna.create_study(
            study_name=self.options.study_name,
            storage=storage,
            sampler=sampler,
            pruner=build_pruner(self.options.get("pruner")) or optuna.pruners.NopPruner(),
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
        self.searched = [k for k, d in space.items() if isinstance(d, BaseDistribution)]
        try:
            left = self.left_running(study)
            if left:
                log.info("running again the %d trial(s) this sweep left running", len(left))
                self.launch(study, left)
            self.reclaim_stale(study)
            if counted(study) >= self.options.n_trials and not self.waiting(study):
                log.info(
                    "the study has %d trial(s), hydra.sweeper.n_trials=%d: no new trial; ask "
                    "for more with a larger hydra.sweeper.n_trials",
                    counted(study),
                    self.options.n_trials,
                )
            if self.mode == "async":
                self.run_workers(study, space)
            else:
                while self.may_go_on():
                    self.reclaim_stale(study)
                    jobs = self.ask(study, space)
                    if not jobs:
                        break
                    self.launch(study, jobs)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.close()
        self.write_results(study)

    def ask(
        self, study: optuna.Study, space: dict[str, BaseDistribution | str], most: int = 0
    ) -> list[TrialJob]:
        """The next trials to run (up to `most`, else n_jobs; none once the study is full),
        counted and asked for while no other sweep of the study does (asking)."""
        assert self.storage is not None
        with asking(self.storage, study.study_name):
            to_go = self.options.n_trials - counted(study) + self.waiting(study)
            most = most or self.options.n_jobs
            return [self.new_trial(study, space) for _ in range(min(most, to_go))]

    def asynchronous(self) -> bool:
        """Whether the trials run asynchronously (hydra.sweeper.mode): n_jobs workers, each asking
        for its next trial the moment its last one ends, instead of batches of n_jobs that
        wait for their slowest trial. Hydra's basic launcher runs jobs one by one in this
        process, so it only runs batches."""
        mode, workers = self.options.get("mode", "auto"), self.options.n_jobs
        in_process = type(self.launcher).__name__ == "BasicLauncher"
        if mode == "async" and in_process:
            raise UserError(
                "hydra.sweeper.mode=async needs a launcher that runs jobs side by side "
                "(hydra/launcher=joblib or submitit_slurm); the basic launcher runs them one "
                "by one in this process"
            )
        chosen = mode == "async" or (mode == "auto" and workers > 1 and not in_process)
        if workers > 1 or mode != "auto":
            log.info(
                "%s search: %s",
                "asynchronous" if chosen else "batch",
                f"{workers} workers, each starting a new trial the moment its last one ends"
                if chosen
                else f"batches of {workers} trial(s), each batch waiting for its slowest trial",
            )
        return chosen

    def run_workers(self, study: optuna.Study, space: dict[str, BaseDistribution | str]) -> None:
        """The asynchronous search: n_jobs threads, each asking for one trial, launching it
        as a job of its own and telling its value, until the study is full. `self.lock` keeps
        the asking, the counting and the failure rules to one thread at a time."""
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while True:
                    with self.lock:
                        if not self.may_go_on():
                            return
                        self.reclaim_stale(study)
                        jobs = self.ask(study, space, most=1)
                    if not jobs:
                        return
                    self.launch(study, jobs)
            except BaseException as err:  # re-raised by the sweep's own thread
                errors.append(err)

        workers = [
            threading.Thread(target=work, name=f"search-worker-{k}", daemon=True)
            for k in range(self.options.n_jobs)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            while worker.is_alive():  # a timed join leaves signals to this thread
                worker.join(timeout=0.5)
        if errors:
            raise errors[0]

    @staticmethod
    def waiting(study: optuna.Study) -> int:
        """Trials queued to run again (a stale trial's retry): asked for before new ones."""
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def reclaim_stale(self, study: optuna.Study) -> None:
        """Fail the trials whose heartbeat stopped longer than the grace period ago (their
        sweep was killed); Optuna queues each one's parameters to run again."""
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        fail_stale_trials(study)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number not in before:
                log.warning(
                    "trial %d (run by %s) stopped beating for longer than "
                    "hydra.sweeper.grace_period: marked failed, its parameters run again",
                    trial.number,
                    trial.user_attrs.get(SWEEP_DIR_ATTR, "another sweep"),
                )

    def left_running(self, study: optuna.Study) -> list[TrialJob]:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        mine = [t for t in running if t.user_attrs.get(SWEEP_DIR_ATTR) == str(self.sweep_dir)]
        for trial in mine:  # before another sweep takes them for stale
            self.beat(trial._trial_id)
        return [TrialJob(t.number, tuple(t.user_attrs[OVERRIDES_ATTR]), t._trial_id) for t in mine]

    def beat(self, trial_id: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat(trial_id)

    def new_trial(self, study: optuna.Study, space: dict[str, BaseDistribution | str]) -> TrialJob:
        searched = {k: d for k, d in space.items() if isinstance(d, BaseDistribution)}
        trial = study.ask(searched)
        self.beat(trial._trial_id)
        values = {**space, **trial.params}
        overrides = tuple(f"{key}={values[key]}" for key in space)
        retried = study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        if retried is not None:
            self.adopt(study, retried, trial.number, overrides)
        trial.set_user_attr(SWEEP_DIR_ATTR, str(self.sweep_dir))
        trial.set_user_attr(OVERRIDES_ATTR, list(overrides))
        return TrialJob(trial.number, overrides, trial._trial_id)

    def adopt(self, study: optuna.Study, stale: int, number: int, overrides: Sequence[str]) -> None:
        """A stale trial's parameters run again as trial `number`: its job starts from what
        the stale trial's folder holds (checkpoints, metrics, manifest), when this machine
        reaches it, and so resumes from its last.pt (lifecycle.continue_sweep_job)."""
        old_sweep = study.get_trials(deepcopy=False)[stale].user_attrs.get(SWEEP_DIR_ATTR)
        source = job_folder(Path(old_sweep), stale) if old_sweep else None
        if source is None or not (source / "checkpoints" / "last.pt").is_file():
            log.info("trial %d runs stale trial %d's parameters from the start", number, stale)
            return
        target = self.sweep_dir / job_dirname(number, list(overrides))
        target.mkdir(parents=True, exist_ok=True)
        for name in ("checkpoints", "metrics.json", "manifest.json"):
            if (source / name).is_dir():
                shutil.copytree(source / name, target / name, dirs_exist_ok=True)
            elif (source / name).is_file():
                shutil.copy2(source / name, target / name)
        log.info("trial %d resumes stale trial %d from %s", number, stale, source)

    def launch(self, study: optuna.Study, jobs: Sequence[TrialJob]) -> None:
        for run in consecutive(jobs):
            returns = self.launcher.launch(
                [j.overrides for j in run], initial_job_idx=run[0].number
            )
            for job, ret in zip(run, returns, strict=True):
                with self.lock:
                    self.record(study, job, ret)

    def record(self, study: optuna.Study, job: TrialJob, ret: JobReturn) -> None:
        """Tell the study how a trial's job ended, and count it."""
        value = trial_value(ret)
        self.ran += 1
        self.note_first_failure(job.number, value)
        if value is None:
            self.failed += 1
            study.tell(job.number, state=TrialState.FAIL)
        elif was_pruned(job_folder(self.sweep_dir, job.number)):
            # The job stopped at the pruner's word (pruning.py); the study keeps
            # the values it reported, the last one as the trial's.
            study.tell(job.number, state=TrialState.PRUNED)
        else:
            study.tell(job.number, value)
        if job.trial_id is not None and self.heartbeat is not None:
            self.heartbeat.done(job.trial_id)

    def note_first_failure(self, number: int, value: float | None) -> None:
        """Keep why each of the first trials failed before training, while they all did."""
        if len(self.first_failures) < self.ran - 1:
            return  # a trial before this one trained: fail-fast is off for this search
        folder = job_folder(self.sweep_dir, number)
        reason = failure_before_training(folder) if value is None else None
        # An error that names a searched key may come from the values drawn (lr=-1 among
        # the choices): other draws may work, so only other errors stop the search.
        if reason is not None and not any(key in reason for key in self.searched):
            self.first_failures.append(reason)

    def fails_fast(self) -> bool:
        """True when the first trials (2, or a first batch of n_jobs) all failed before
        training with one and the same reason that names no searched key: a configuration
        error the searched values do not change, which every other trial would meet too."""
        first = min(self.options.n_trials, max(2, self.options.n_jobs))
        reasons = self.first_failures
        if self.ran < first or len(reasons) < first or len(set(reasons[:first])) != 1:
            return False
        # The summary callback says it, last, and ends the sweep non-zero (sweep.outcome).
        self.stopped_because = (
            f"the first {first} trials failed before training with the same error, so every "
            f"trial would: {reasons[0]}"
        )
        return True

    def may_go_on(self) -> bool:
        """False once the first trials failed alike (fails_fast), or more trials failed
        than max_failure_rate allows (1.0: never)."""
        if self.stopped_because or self.fails_fast():
            return False
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
        pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if pruned:
            log.info(
                "%d trial(s) pruned: %s", len(pruned), ", ".join(str(t.number) for t in pruned)
            )
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
        results["mode"] = self.mode
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / RESULTS_FILE)
        log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
