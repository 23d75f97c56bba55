"""The Hydra side of `hparams_search=optuna`: cifar_exp.sweeps.search does the work.

Hydra imports every module under hydra_plugins at each start, so this one imports neither
Optuna nor the search until a search starts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class OptunaSweeper(Sweeper):
    """Runs the trials of an Optuna study as the jobs of one sweep folder."""

    def __init__(self, **options: Any) -> None:
        # The sampler stays config (`_recursive_: false`) until a search starts: building it
        # imports Optuna, which may be missing.
        self.options = OmegaConf.create(options)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from cifar_exp.errors import UserError
        from cifar_exp.sweeps.continuation import MULTIRUN_RECORD
        from cifar_exp.sweeps.jobs import outcome

        try:
            from cifar_exp.sweeps.search import Search
        except ImportError as err:  # no Optuna, or one older than 3.0
            log.error(
                "hparams_search=optuna needs Optuna 3.0 or later (%s); install the sweeps "
                "extra: pip install -e '.[sweeps]'",
                err,
            )
            sys.exit(1)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # What continuing this sweep is checked against (continuation.check_same_sweep).
        OmegaConf.save(self.config, sweep_dir / MULTIRUN_RECORD)
        search = Search(self.options, self.launcher, sweep_dir)
        try:
            study = search.open_study(instantiate(self.options.sampler))
        except UserError as err:  # before any trial starts
            log.error("%s", err)
            sys.exit(1)
        search.run(study, arguments)
        # The summary callback, which runs after this, ends the sweep with it (non-zero).
        outcome.stopped_because = search.stopped_because
