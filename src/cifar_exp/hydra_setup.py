"""How cifar-exp plugs into Hydra: the one registration step every entrypoint takes before
Hydra composes its config (`setup_hydra`: the config schemas and the resolvers
conf/config.yaml uses), those resolvers, and the callbacks that check a run's folder before
Hydra writes anything into it.

`RunDirGuard` (conf/config.yaml's callback) stops a run before anything is written when its
directory is in use by another process (records/lock.py), is not writable, has no room for its
checkpoints, or already holds a run (a finished run is never overwritten; continue one with
`resume=`); then it locks the folder for this process. For a sweep it checks the sweep folder
(sweeps/continuation.py). `OutputDirGuard` does the writable check for the tools beside the
run (eval, predict, model_summary, lr_find), which only read runs and lock nothing.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_exp.config import is_plumbing, register_schemas
from cifar_exp.errors import UserError
from cifar_exp.records.checkpoint import check_space, find_checkpoint, run_dir_of
from cifar_exp.records.commands import override, run_command
from cifar_exp.records.lock import hold
from cifar_exp.records.naming import MAX_DIRNAME, job_dirname, override_key
from cifar_exp.records.run_folder import (
    check_writable,
    close_log_files,
    refuse_if_holds_a_run,
    refuse_if_in_use,
)
from cifar_exp.runtime import distributed
from cifar_exp.runtime.signals import gate
from cifar_exp.sweeps import dry_run
from cifar_exp.sweeps.continuation import check_sweep_dir, plan_job
from cifar_exp.training.build import check_before_start

log = logging.getLogger("cifar_exp")
T = TypeVar("T")

# The config groups, as an absolute folder: every entrypoint finds them however it is reached
# (`python -m`, the cifar-exp script, a launcher's worker, a test calling its main()).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

# What Hydra's override grammar does not take unquoted in a value (e.g. "=", ",", brackets).
_UNSAFE = re.compile(r"[^\w.+@%-]")


def setup_hydra(command_line: list[str] | None = None) -> None:
    """The one registration step every entrypoint takes before Hydra composes its config
    (and a launcher's worker before it runs a job, see run.py): the config schemas in
    Hydra's ConfigStore and our resolvers. An entrypoint passes its `command_line`, whose
    mistakes Hydra would answer without a way out (check_command_line) end it here."""
    if command_line is not None and (problem := check_command_line(command_line)):
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    register_schemas()
    register_resolvers()
    share_config_store()


def check_command_line(args: list[str]) -> str | None:
    """The first override Hydra would refuse with a message that does not say the fix: a
    network's name given as the model group's option, a non-ASCII value without quotes."""
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if not value.isascii() and value[:1] not in ("'", '"'):
            return (
                f"{arg}: Hydra's override grammar takes non-ASCII characters only in quotes; "
                f"""write '{key}="{value}"' (the shell's quotes around Hydra's)"""
            )
        if key.lstrip("+~") == "model" and (hint := network_hint(value)):
            return hint
    return None


def network_hint(name: str) -> str | None:
    """For model=<name> where <name> is no option of conf/model/ but a timm or torchvision
    network: the override that builds it."""
    if not name.isidentifier() or (Path(CONFIG_DIR) / "model" / f"{name}.yaml").exists():
        return None
    option = f"model={name} is not an option of the model group"
    try:
        import timm

        if timm.is_model(name):
            return f"{option}; {name} is a timm network: model=timm model.arch={name}"
    except ImportError:
        pass
    import torchvision.models

    if name in torchvision.models.list_models():
        return f"{option}; {name} is a torchvision network: model=torchvision model.arch={name}"
    return None


def share_config_store() -> None:
    """Let Hydra's copies of its config repository share the one ConfigStore.

    Hydra 1.3 deep-copies the repository for every config it composes and every config
    group `--help` lists (105 times for our --help), and with it the ConfigStore singleton
    and every schema in it: seconds of `--help`, and work in every sweep job (hydra-zen#769
    measured it). Hydra's own fix (facebookresearch/hydra#2928, not in hydra-core 1.3.8)
    reads the live singleton instead of a copy; this does the same. Sharing is safe: the
    store is only read through ConfigStore.load(), which returns a copy of the node."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.__deepcopy__ = lambda self, memo: self


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


def hydra_subdir(resume: str | None, mode: Any, output_dir: str) -> str | None:
    """hydra.output_subdir: a resumed run, and a sweep job that continues an earlier attempt
    (the same sweep, checked by RunDirGuard), keep the .hydra/ of their first start; the
    manifest records each attempt. A finished job's folder stays untouched. Of a job's
    several processes (a Slurm job's tasks), the first alone writes it."""
    if resume or not distributed.place().is_main:
        return None
    if str(mode).endswith("MULTIRUN") and (Path(output_dir) / ".hydra").is_dir():
        return None
    return ".hydra"


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


def nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


class RunDirGuard(Callback):
    """Checks and locks the run (or sweep, and each job's) directory before Hydra creates or
    writes anything in it. From here until the job starts, a signal waits (signals.py)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if dry_run.request.on:
            dry_run.show_and_exit(config, sweep=False)
        gate.defer()
        self._check(check_run_dir, config.hydra.run.dir, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if dry_run.request.on:
            dry_run.show_and_exit(config, sweep=True)
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
