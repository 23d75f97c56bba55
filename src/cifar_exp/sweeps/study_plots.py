"""The plots of a search's Optuna study, beside its report.png: optimization history,
parameter importances, parallel coordinates and slice plots (optuna.visualization.matplotlib).

The study is found through the sweep folder's multirun.yaml (the sweeper's storage and study
name; without a storage, the sweep's optuna.db). Optuna is imported only when the folder
holds a search, so a report of a plain sweep needs no sweeps extra.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

SWEEPER = "cifar_exp_optuna"
# Hydra's record of the sweep (sweeps/continuation.py's MULTIRUN_RECORD: that module imports
# torch, a report does not).
MULTIRUN_RECORD = "multirun.yaml"
# File name -> the optuna.visualization.matplotlib function that draws it.
PLOTS = {
    "optuna-history.png": "plot_optimization_history",
    "optuna-importances.png": "plot_param_importances",
    "optuna-parallel.png": "plot_parallel_coordinate",
    "optuna-slice.png": "plot_slice",
}


# What the search maximizes (run.py returns it), instead of Optuna's "Objective Value".
TARGET = "validation accuracy"


def study_of(sweep_dir: Path) -> tuple[str, str] | None:
    """(storage URL, study name) of the search run in `sweep_dir`; None for another sweep."""
    record = sweep_dir / MULTIRUN_RECORD
    if not record.is_file():
        return None
    sweeper = OmegaConf.select(OmegaConf.load(record), "hydra.sweeper", default=None)
    if sweeper is None or SWEEPER not in str(sweeper.get("_target_", "")):
        return None
    storage = sweeper.get("storage") or f"sqlite:///{(sweep_dir / 'optuna.db').absolute()}"
    return storage, sweeper.get("study_name") or "cifar_exp"


def write_study_plots(sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Draw the study's plots into `out_dir` (the sweep folder); return the files written.
    A plot that cannot be drawn yet (importances need two finished trials) is skipped with
    one line saying why."""
    found = study_of(sweep_dir)
    if found is None:
        return []
    try:
        import optuna
        import optuna.visualization.matplotlib as plots
        import sqlalchemy.exc
    except ImportError as err:
        log.warning("no study plots: %s (install the sweeps extra)", err)
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    storage, name = found
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except sqlalchemy.exc.DatabaseError as err:
        from cifar_exp.sweeps.search import damaged_database

        log.warning("no study plots: %s", damaged_database(storage, err))
        return []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        log.info("no study plots: no trial of study %s finished yet", name)
        return []
    written = []
    for filename, function in PLOTS.items():
        path = (out_dir or sweep_dir) / filename
        try:
            with warnings.catch_warnings():
                # optuna.visualization.matplotlib is "experimental": nothing to act on.
                warnings.simplefilter("ignore")
                axes: Any = getattr(plots, function)(study, target_name=TARGET)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("no %s: %s", filename, err)
            continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), 5)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written
