"""Entrypoint: `python -m cifar_exp.run [group=option ...] [key=value ...]`.

Hydra composes the config from conf/; this module builds the data, model, optimizer and
schedule it names, trains, and returns the final test accuracy (the value sweepers optimize).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cifar_exp.config import register_schemas, validate
from cifar_exp.data import BatchLoader, load_dataset
from cifar_exp.engine import FitOptions, fit
from cifar_exp.errors import UserError
from cifar_exp.models import MODELS
from cifar_exp.optim import build_optimizer, build_scheduler
from cifar_exp.summary import SWEEP_METRIC
from cifar_exp.sweep import record_failure, threads_per_job
from cifar_exp.tracking import RunTracker

log = logging.getLogger("cifar_exp")

register_schemas()
# Cached like Hydra's ${now:}: the cache travels with the config to launcher workers, so every
# job of a sweep resolves the sweep folder to the starting process's id.
OmegaConf.register_new_resolver("pid", os.getpid, replace=True, use_cache=True)


def resolve_device(kind: str) -> torch.device:
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device=cuda was asked for but no CUDA GPU is available "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "use device=cpu or device=auto"
        )
    return torch.device(kind)


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build everything the config names, train, and return the final metrics."""
    validate(cfg)
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = resolve_device(cfg.device.type)
    torch.manual_seed(t.seed)

    data = load_dataset(OmegaConf.to_container(cfg.dataset, resolve=True))
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    model = MODELS.build(model_options.pop("name"), **model_options).to(device)
    params = sum(p.numel() for p in model.parameters())
    log.info(
        "model %s (%s parameters) on %s; %d train / %d test images, %d classes",
        cfg.model.name,
        f"{params:,}",
        device,
        len(data.train),
        len(data.test),
        len(data.classes),
    )

    train_loader = BatchLoader(
        data.train,
        t.batch_size,
        device,
        shuffle=True,
        seed=t.seed,
        limit_batches=t.limit_train_batches,
    )
    test_loader = BatchLoader(
        data.test, t.eval_batch_size, device, limit_batches=t.limit_eval_batches
    )
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer), model.parameters())
    scheduler = build_scheduler(
        OmegaConf.to_container(cfg.scheduler), optimizer, t.epochs, len(train_loader)
    )
    tracker = RunTracker(
        run_dir, {"model": cfg.model.name, "params": params, "device": str(device)}
    )
    start = time.perf_counter()
    final = fit(
        model,
        train_loader,
        test_loader,
        optimizer,
        scheduler,
        tracker,
        FitOptions(t.epochs, t.eval_every, t.log_every_n_steps, t.progress_bar),
    )
    final.update(epochs=t.epochs, wall_s=time.perf_counter() - start)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["model"]["params"] = params
    tracker.finish(hparams, final)
    log.info(
        "final test accuracy %.4f (best %.4f); outputs in %s",
        final["test_acc"],
        final["best_test_acc"],
        run_dir,
    )
    return final


# An absolute folder, so the configs are found however main is reached: `python -m`, the
# cifar-exp script, or a launcher's worker that imports this module.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if in_sweep and not cfg.trainer.num_threads:
        threads = threads_per_job(hydra_cfg.launcher)
        if threads:
            torch.set_num_threads(threads)
            log.info("%d CPU thread(s) for this job: jobs run side by side", threads)
    try:
        return train(cfg, run_dir)[SWEEP_METRIC]
    except Exception as err:
        reason = record_failure(run_dir, err)
        if in_sweep:
            # One bad job must not end the sweep: record it and let the others run. None, not
            # NaN: the Optuna sweeper marks a trial without a number as failed and goes on,
            # while a NaN makes it pass values to a failed trial, which Optuna rejects.
            if isinstance(err, UserError):
                log.error("job failed, the sweep goes on: %s", reason)
            else:
                log.exception("job failed, the sweep goes on: %s", reason)
            return None
        if isinstance(err, UserError):
            log.error("%s", err)
            sys.exit(1)
        raise


if __name__ == "__main__":
    # Run the function under its importable name, not __main__'s copy: launchers that send
    # the task to other processes (joblib, submitit) pickle it by reference.
    from cifar_exp.run import main as entrypoint

    entrypoint()
