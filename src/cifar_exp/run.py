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
from omegaconf import DictConfig, OmegaConf

from cifar_exp.augment import build_transforms
from cifar_exp.config import register_schemas, validate
from cifar_exp.data import BatchLoader, load_dataset
from cifar_exp.engine import FitOptions, fit
from cifar_exp.errors import UserError
from cifar_exp.models import MODELS
from cifar_exp.optim import build_optimizer, build_scheduler
from cifar_exp.tracking import RunTracker

log = logging.getLogger("cifar_exp")

register_schemas()
OmegaConf.register_new_resolver("pid", os.getpid, replace=True)


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
    if cfg.dataset.num_classes is None:  # follow the data (model.num_classes refers to this)
        cfg.dataset.num_classes = len(data.classes)
    if cfg.dataset.on_device:
        data = data.to(device)
    augment = OmegaConf.to_container(cfg.augment)
    train_transform, eval_transform = build_transforms(augment, data.train)
    cfg.augment.mean, cfg.augment.std = augment["mean"], augment["std"]  # recorded in hparams
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    model = MODELS.build(model_options.pop("name"), **model_options).to(device)
    params = sum(p.numel() for p in model.parameters())
    log.info(
        "model %s (%s parameters) on %s; %d train / %d val / %d test images, %d classes",
        cfg.model.name,
        f"{params:,}",
        device,
        len(data.train),
        0 if data.val is None else len(data.val),
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
        transform=train_transform,
    )
    test_loader = BatchLoader(
        data.test,
        t.eval_batch_size,
        device,
        limit_batches=t.limit_eval_batches,
        transform=eval_transform,
    )
    val_loader = (
        None
        if data.val is None
        else BatchLoader(
            data.val,
            t.eval_batch_size,
            device,
            limit_batches=t.limit_eval_batches,
            transform=eval_transform,
        )
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
        val_loader=val_loader,
    )
    final.update(epochs=t.epochs, wall_s=time.perf_counter() - start)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams["model"]["params"] = params
    tracker.finish(hparams, final)
    best = "best_val_acc" if "best_val_acc" in final else "best_test_acc"
    log.info(
        "final test accuracy %.4f (%s %.4f); outputs in %s",
        final["test_acc"],
        best.replace("_", " "),
        final[best],
        run_dir,
    )
    return final


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        final = train(cfg, run_dir)
        # Sweeps select on the validation split when there is one, never on test.
        return final.get("val_acc", final["test_acc"])
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)


if __name__ == "__main__":
    main()
