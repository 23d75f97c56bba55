"""How run and job folders are named from the overrides typed, so that TensorBoard, which
names each run by its folder, shows what sets the runs apart."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import ListConfig

# The keys a sweep varies, handed from the process that starts the sweep to every job
# process (which inherits the environment) so job folders can be named by them alone.
SWEPT_KEYS_ENV = "CIFAR_EXP_SWEPT_KEYS"
# Folder names stay well under the 255-byte limit of common file systems.
MAX_DIRNAME = 120


# Overrides that say how to continue a sweep (see continuation.plan_job), not what a job is.
NOT_SWEPT = ("rerun_failed",)


def override_key(override: str) -> str:
    """'+optimizer.lr=0.1' -> 'optimizer.lr'."""
    return override.split("=", 1)[0].lstrip("+~")


def job_dirname(num: int, overrides: ListConfig | list[str]) -> str:
    """'3_model=resnet,optimizer.lr=0.003': the job number and the overrides that vary.

    Used as hydra.sweep.subdir, so TensorBoard names each run by what sets it apart.
    Without the sweep's keys (a sweep not started by cifar-exp's callback), all overrides.
    """
    wanted = os.environ.get(SWEPT_KEYS_ENV)
    keys = set(wanted.split(",")) if wanted else None
    shown = [o for o in overrides if keys is None or override_key(o) in keys]
    name = ",".join([str(num), *shown]).replace(",", "_", 1).replace("/", "-")
    return name[:MAX_DIRNAME]


def trial_id(run_dir: Path) -> str:
    """The run's row name in TensorBoard's HParams (its Trial ID column, about 14 characters
    wide): the folder's own name first, which sets it apart from its neighbours (a job's
    number and swept values; a single run's time and name), then the folder it is in.

    TensorBoard would show the run's path below --logdir instead, which under
    `--logdir outputs` starts with the same date or multirun/ in every row. The folder keeps
    the names of two runs apart wherever TensorBoard is pointed: rows of the same name are
    merged into one."""
    return f"{run_dir.name} ({run_dir.absolute().parent})"
