"""Entrypoint: `python -m cifar_exp.run [group=option ...] [key=value ...]`.

Hydra composes the config from conf/; this module builds the data, model, optimizer and
schedule it names, trains, and returns the final test accuracy (the value sweepers optimize).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cifar_exp import distributed
from cifar_exp.config import register_schemas, validate
from cifar_exp.data import BatchLoader, load_dataset
from cifar_exp.engine import FitOptions, fit
from cifar_exp.errors import ConfigError, UserError
from cifar_exp.models import MODELS
from cifar_exp.optim import build_optimizer, build_scheduler
from cifar_exp.performance import Precision, compile_model, use_channels_last
from cifar_exp.tracking import RunTracker

log = logging.getLogger("cifar_exp")

register_schemas()
# Used in hydra.run.dir: under torchrun they are rank 0's, so all ranks share one directory.
OmegaConf.register_new_resolver("launch_time", distributed.launch_time, replace=True)
OmegaConf.register_new_resolver("pid", distributed.launch_pid, replace=True)


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
    here = distributed.place()
    if t.batch_size % here.world_size:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} is the global batch and must be divisible by "
            f"the {here.world_size} processes; use a multiple of {here.world_size}"
        )
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = resolve_device(cfg.device.type)
    if here.distributed and device.type == "cuda":
        device = distributed.local_gpu(here)
    precision = Precision(t.precision, device)
    torch.manual_seed(t.seed)

    data = load_dataset(OmegaConf.to_container(cfg.dataset, resolve=True))
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    model = MODELS.build(model_options.pop("name"), **model_options).to(device)
    params = sum(p.numel() for p in model.parameters())
    if t.channels_last:
        model = use_channels_last(model)
    model = distributed.wrap(model, device, here)
    if t.compile:
        model = compile_model(model, t.compile_mode)
    log.info(
        "model %s (%s parameters) on %s; %d train / %d test images, %d classes",
        cfg.model.name,
        f"{params:,}",
        device,
        len(data.train),
        len(data.test),
        len(data.classes),
    )
    log.info(
        "batch %d (global) = %d process(es) x %d; precision %s, channels_last %s, compile %s",
        t.batch_size,
        here.world_size,
        t.batch_size // here.world_size,
        t.precision,
        t.channels_last,
        t.compile_mode if t.compile else "off",
    )

    shard = {"rank": here.rank, "world_size": here.world_size}
    train_loader = BatchLoader(
        data.train,
        t.batch_size,
        device,
        shuffle=True,
        seed=t.seed,
        limit_batches=t.limit_train_batches,
        **shard,
    )
    test_loader = BatchLoader(
        data.test, t.eval_batch_size, device, limit_batches=t.limit_eval_batches, **shard
    )
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer), model.parameters())
    scheduler = build_scheduler(
        OmegaConf.to_container(cfg.scheduler), optimizer, t.epochs, len(train_loader)
    )
    tracker = RunTracker(
        run_dir,
        {
            "model": cfg.model.name,
            "params": params,
            "device": str(device),
            "world_size": here.world_size,
            "batch_size_per_process": t.batch_size // here.world_size,
        },
        write=here.is_main,
    )
    start = time.perf_counter()
    final = fit(
        model,
        train_loader,
        test_loader,
        optimizer,
        scheduler,
        tracker,
        FitOptions(
            t.epochs, t.eval_every, t.log_every_n_steps, t.progress_bar, precision, t.compile
        ),
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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    distributed.quiet_other_ranks(distributed.place())
    try:
        return train(cfg, run_dir)["test_acc"]
    except UserError as err:
        log.error("%s", err)
        sys.exit(1)


def main() -> None:
    """`python -m cifar_exp.run`, alone or as each of torchrun's processes."""
    here = distributed.setup()
    if not here.is_main:
        # Rank 0 alone writes the run directory's .hydra/ record.
        sys.argv.append("hydra.output_subdir=null")
    try:
        hydra_main()
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
