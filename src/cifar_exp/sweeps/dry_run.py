"""`--dry-run`: what a command would run, printed, with nothing run and nothing written.

`python -m cifar_exp.run -m optimizer.lr=1e-3,3e-3 model=lenet5,resnet --dry-run` lists a
grid sweep's jobs (each one's folder name and overrides); with `hparams_search=optuna` it
shows the search: its space, sampler, pruner, storage, mode, and the trials its study already
holds (read, never created). Without `-m` it names the one run's folder. The check happens in
the run folder's guard (hydra_setup.RunDirGuard) before any folder is made or locked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from cifar_exp.components.pruning import storage_url
from cifar_exp.records.naming import SWEPT_KEYS_ENV, job_dirname

FLAG = "--dry-run"


class Request:
    """Whether this process was asked for a dry run (the flag is taken off the command line
    before Hydra parses it)."""

    on = False


request = Request()


def take_flag(argv: list[str]) -> None:
    """Remove --dry-run from `argv` (in place), noting that it was there."""
    request.on = FLAG in argv
    argv[:] = [a for a in argv if a != FLAG]


def show_and_exit(config: DictConfig, sweep: bool) -> None:
    request.on = False  # once: a caller's next command in this process is a real one
    print(describe_sweep(config) if sweep else describe_run(config), flush=True)
    sys.exit(0)


def describe_run(config: DictConfig) -> str:
    overrides = " ".join(config.hydra.overrides.task) or "(the defaults)"
    return (
        f"dry run: one run into {Path(config.hydra.run.dir).absolute()} with {overrides}; "
        "nothing ran and nothing was written (add -m for a sweep)"
    )


def describe_sweep(config: DictConfig) -> str:
    sweep_dir = Path(config.hydra.sweep.dir).absolute()
    target = str(config.hydra.sweeper.get("_target_", ""))
    launcher = str(config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
    if target.endswith("OptunaSweeper"):
        lines = describe_search(config.hydra, sweep_dir, launcher)
    else:
        parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        lines = [f"dry run: a sweep of {len(jobs)} job(s) into {sweep_dir} ({launcher}):"]
        keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
        os.environ[SWEPT_KEYS_ENV] = ",".join(keys)  # the folder names a real sweep gives
        try:
            lines += [f"  {job_dirname(n, job)}" for n, job in enumerate(jobs)]
        finally:
            os.environ.pop(SWEPT_KEYS_ENV, None)
    lines.append("nothing ran and nothing was written; run it again without --dry-run")
    return "\n".join(lines)


def describe_search(hydra: DictConfig, sweep_dir: Path, launcher: str) -> list[str]:
    from cifar_exp.sweeps.search import search_space

    options = hydra.sweeper
    params = OmegaConf.to_container(options.params or {})
    space = search_space([f"{k}={v}" for k, v in params.items()] + list(hydra.overrides.task))
    mode = options.get("mode", "auto")
    if mode == "auto":
        mode = "batch" if launcher == "BasicLauncher" or options.n_jobs == 1 else "async"
    sampler = dict(OmegaConf.to_container(options.sampler))
    name = sampler.pop("_target_")
    pruner = OmegaConf.to_container(options.pruner) if options.get("pruner") else "none"
    url = storage_url(options.storage, sweep_dir)
    lines = [
        f"dry run: an Optuna search into {sweep_dir} ({launcher}): {options.direction} over "
        f"{options.n_trials} trial(s), {options.n_jobs} at a time ({mode})",
        f"  study {options.study_name} in {url}: {study_trials(url, options.study_name)}",
        f"  sampler {name}({', '.join(f'{k}={v}' for k, v in sampler.items())})",
        f"  pruner {pruner}",
    ]
    searched = {k: v for k, v in space.items() if not isinstance(v, str)}
    fixed = " ".join(f"{k}={v}" for k, v in space.items() if isinstance(v, str))
    lines += [f"  searched {key}: {value!r}" for key, value in searched.items()]
    return lines + ([f"  fixed in every trial: {fixed}"] if fixed else [])


def study_trials(url: str, study_name: str) -> str:
    """What the study holds, read without creating it (or a line on why it cannot be read)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return "no study yet"
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        return "no study of that name yet"
    except Exception as err:  # a server down, a damaged file: say so, list the rest
        return f"cannot read it ({type(err).__name__}: {str(err).splitlines()[0]})"
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    return f"{len(states)} trial(s) already ({counts})" if states else "no trials yet"
