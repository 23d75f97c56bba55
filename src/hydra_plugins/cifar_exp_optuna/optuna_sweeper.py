"""The Hydra side of `hparams_search=optuna`: cifar_exp.search does the work.

Hydra imports every module under hydra_plugins at each start, so this one imports neither
Optuna nor the search until a search starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class OptunaSweeper(Sweeper):
    """Runs the trials of an Optuna study as the jobs of one sweep folder."""

    def __init__(self, **options: Any) -> None:
        # The sampler arrives instantiated (an Optuna sampler object), the rest as config.
        sampler = options.pop("sampler")
        self.options = OmegaConf.create(options)
        self.sampler = sampler

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from cifar_exp.rundir import MULTIRUN_RECORD
        from cifar_exp.search import Search

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # What continuing this sweep is checked against (rundir.check_same_sweep).
        OmegaConf.save(self.config, sweep_dir / MULTIRUN_RECORD)
        search = Search(self.options, self.launcher, sweep_dir)
        study = search.open_study(self.sampler)
        search.run(study, arguments)
