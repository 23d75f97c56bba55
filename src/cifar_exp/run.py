"""Entrypoint: `python -m cifar_exp.run [group=option ...] [key=value ...]`.

Hydra composes the config from conf/; this module builds the data, model, optimizer and
schedule it names, trains, and returns the value sweepers optimize: the final validation
accuracy when `dataset.val_size` holds out a validation split, else the final test accuracy.
`resume=<run dir or checkpoint>` continues a run from its checkpoint, in its own directory.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cifar_exp import distributed
from cifar_exp.augment import build_transforms, normalization
from cifar_exp.averaging import WeightAverage
from cifar_exp.batches import BatchLoader, BatchTransform, to_model_input
from cifar_exp.checkpoint import (
    CHECKPOINT_DIR,
    Checkpointer,
    find_checkpoint,
    load_checkpoint,
    load_states,
    restore_rng,
)
from cifar_exp.config import validate
from cifar_exp.datasets import DataBundle, Split, load_dataset
from cifar_exp.device import compile_model, describe_device, resolve_device, use_channels_last
from cifar_exp.engine import Loaders, Progress, Trainer
from cifar_exp.errors import ConfigError, UserError
from cifar_exp.manifest import RunManifest, git_commit
from cifar_exp.models import MODELS, InitializedFromData
from cifar_exp.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.pictures import Pictures
from cifar_exp.precision import Precision
from cifar_exp.resume import override_keys, resume_config, saved_config
from cifar_exp.rundir import (
    clear_attempt,
    plan_job,
    setup_hydra,
)
from cifar_exp.signals import Interrupted, StopOnSignal
from cifar_exp.summary import sweep_metric
from cifar_exp.sweep import failure_reason, threads_per_job
from cifar_exp.tracking import (
    RunTracker,
    event_files,
    record_failure_before_training,
    select_hparams,
)

log = logging.getLogger("cifar_exp")

setup_hydra()


def train(
    cfg: DictConfig,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    manifest: RunManifest | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Build everything the config names, train (from `checkpoint` when given), return the
    final metrics. Checkpoints go to run_dir/checkpoints/. `overrides`, those typed on the
    command line, come first in TensorBoard's HParams and are shown in its Text tab."""
    trainer, cfg = build_trainer(cfg, run_dir, manifest, fresh=checkpoint is None)
    if checkpoint is not None:
        continue_from(trainer, checkpoint)
    params = sum(p.numel() for p in trainer.net.parameters())
    config_yaml = trainer.checkpointer.meta["config"]
    trainer.tracker.start(
        run_hparams(cfg, overrides or [], params), describe_run(config_yaml, overrides or [])
    )
    start = time.perf_counter()
    with StopOnSignal() as stop, trainer.tracker.session():
        final = trainer.fit(stop)
    final.update(epochs=cfg.trainer.epochs, wall_s=time.perf_counter() - start)
    trainer.tracker.finish(final)
    best = "best_val_acc" if "best_val_acc" in final else "best_test_acc"
    log.info(
        "final test accuracy %.4f (%s %.4f); outputs in %s",
        final["test_acc"],
        best.replace("_", " "),
        final[best],
        run_dir,
    )
    return final


def build_trainer(
    cfg: DictConfig, run_dir: Path, manifest: RunManifest | None = None, fresh: bool = True
) -> tuple[Trainer, DictConfig]:
    """The Trainer the config describes, and the config completed with what the data
    decided (the number of classes, the normalization statistics), as checkpoints store it.
    `fresh`: a new run, not one a checkpoint continues (which holds data-dependent inits)."""
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
    device, precision = device_and_precision(cfg, here, manifest)
    torch.manual_seed(t.seed)
    data, cfg, (train_transform, eval_transform) = prepare_data(cfg, device)
    net = MODELS.build(cfg.model).to(device)
    init_s = initialize_from_training_data(net, data, eval_transform, device) if fresh else None
    if t.channels_last:
        use_channels_last(net)
    model = distributed.wrap(net, device, here)
    if t.compile:
        model = compile_model(model, t.compile_mode)
    log_setup(cfg, net, device, data, here)
    loaders = build_loaders(data, t, device, here, train_transform, eval_transform)
    optimizer = OPTIMIZERS.build(cfg.optimizer, net)
    tracker = RunTracker(run_dir, run_info(cfg, net, device, here), write=here.is_main)
    trainer = Trainer(
        net=net,
        model=model,
        loaders=loaders,
        optimizer=optimizer,
        scheduler=SCHEDULERS.build(cfg.scheduler, optimizer, t.epochs, len(loaders.train)),
        precision=precision,
        settings=t,
        tracker=tracker,
        progress=Progress(device),
        pictures=Pictures(
            tracker,
            list(data.classes),
            train_transform,
            eval_transform,
            net,
            images=t.log_images,
            histogram_every=t.histogram_every,
            graph=t.log_graph,
        ),
    )
    trainer.init_s = init_s
    if t.ema_decay:
        trainer.average = weight_average(t, net, len(loaders.train))
    trainer.checkpointer = build_checkpointer(cfg, trainer, run_dir / CHECKPOINT_DIR, data)
    return trainer, cfg


def device_and_precision(
    cfg: DictConfig, here: distributed.Place, manifest: RunManifest | None
) -> tuple[torch.device, Precision]:
    """This process's device and the precision there; both recorded in the manifest, the
    precision with why it was chosen (trainer.precision=auto decides by the hardware)."""
    device = resolve_device(cfg.device.type)
    if here.distributed and device.type == "cuda":
        device = distributed.local_gpu(here)
    precision = Precision(cfg.trainer.precision, device)
    log.info("precision %s: %s", precision.name, precision.reason)
    if manifest is not None:
        manifest.update(
            device=describe_device(device),
            precision=precision.name,
            precision_reason=precision.reason,
        )
    return device, precision


def weight_average(t: DictConfig, net: torch.nn.Module, steps_per_epoch: int) -> WeightAverage:
    return WeightAverage(
        net,
        t.ema_decay,
        t.ema_every,
        t.ema_lookahead,
        start_step=round(t.ema_start_epochs * steps_per_epoch),
        total_steps=max(t.epochs * steps_per_epoch, 1),
        ramp_pow=t.ema_ramp_pow,
    )


def prepare_data(
    cfg: DictConfig, device: torch.device
) -> tuple[DataBundle, DictConfig, tuple[BatchTransform, BatchTransform | None]]:
    """The data set (on the device if asked), the config completed with what the data
    decided, and the (train, eval) transforms."""
    data = load_dataset(cfg.dataset)
    if cfg.dataset.on_device:
        data = data.to(device)
    # model.num_classes follows dataset.num_classes, which follows the data when null.
    decided: dict[str, Any] = {
        "dataset": {"num_classes": cfg.dataset.num_classes or len(data.classes)}
    }
    if cfg.augment.normalize:
        mean, std = normalization(OmegaConf.to_container(cfg.augment), data.train)
        decided["augment"] = {"mean": mean, "std": std}
    completed = OmegaConf.merge(cfg, decided)
    augment = OmegaConf.to_container(completed.augment)
    return data, completed, build_transforms(augment, data.train, seed=cfg.trainer.seed)


INIT_IMAGES = 5000  # training images a data-dependent initialization sees (airbench's count)


def initialize_from_training_data(
    net: torch.nn.Module,
    data: DataBundle,
    eval_transform: BatchTransform | None,
    device: torch.device,
) -> float | None:
    """Run the model's data-dependent initialization (airbench's whitening), if it has one,
    on the first INIT_IMAGES training images as evaluation sees them; its time in seconds."""
    if not isinstance(net, InitializedFromData):
        return None
    start = time.perf_counter()
    images = to_model_input(data.train.images[:INIT_IMAGES], device)
    if eval_transform is not None:
        images = eval_transform(images, torch.Generator())
    net.init_from_data(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    log.info(
        "initialized %s from %d training images in %.2fs", type(net).__name__, len(images), seconds
    )
    return seconds


def run_info(
    cfg: DictConfig, net: torch.nn.Module, device: torch.device, here: distributed.Place
) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "params": sum(p.numel() for p in net.parameters()),
        "device": str(device),
        "world_size": here.world_size,
        "batch_size_per_process": cfg.trainer.batch_size // here.world_size,
    }


def build_checkpointer(
    cfg: DictConfig, trainer: Trainer, folder: Path, data: DataBundle
) -> Checkpointer:
    """Checkpoints of every part whose state continuing needs, with the completed config
    (without how this attempt started), the class names and the input shape."""
    parts: dict[str, Any] = {
        "model": trainer.net,
        "optimizer": trainer.optimizer,
        "scheduler": trainer.scheduler,
        "progress": trainer.progress,
        "tracker": trainer.tracker,
    }
    if trainer.precision.scaler is not None:
        parts["scaler"] = trainer.precision.scaler
    if trainer.average is not None:
        parts["average"] = trainer.average
    stored = OmegaConf.to_container(cfg, resolve=True)
    for how_to_start in ("resume", "rerun_failed"):
        stored.pop(how_to_start, None)
    checkpointer = Checkpointer(
        folder,
        parts,
        {
            "config": OmegaConf.to_yaml(OmegaConf.create(stored)),
            "classes": list(data.classes),
            "input_shape": list(data.train.images.shape[1:]),
        },
        write=trainer.tracker.write,
    )
    # Model, gradients and optimizer moments: a generous estimate of a checkpoint's size.
    params = sum(p.numel() for p in trainer.net.parameters())
    checkpointer.check_space(4 * params * 4 + 2**20)
    return checkpointer


def continue_from(trainer: Trainer, checkpoint: dict[str, Any]) -> None:
    """Load the checkpoint's states into the trainer's parts."""
    checkpointer = trainer.checkpointer
    load_states(checkpoint, checkpointer.parts, checkpointer.last)
    # Last, after everything that draws while being built: training continues with the
    # random numbers (dropout, ...) the interrupted run would have drawn next.
    restore_rng(checkpoint["rng"])
    checkpointer.saved["last.pt"] = trainer.progress.where()
    trainer.tracker.continue_from(trainer.progress.epoch, trainer.progress.step)
    log.info("resumed from %s at %s", checkpointer.last, trainer.progress.where())


def build_loaders(
    data: DataBundle,
    t: DictConfig,
    device: torch.device,
    here: distributed.Place,
    train_transform: BatchTransform | None,
    eval_transform: BatchTransform | None,
) -> Loaders:
    """This process's share of the train, test and (if held out) val splits, in batches."""
    shard = {"rank": here.rank, "world_size": here.world_size}

    def evaluation(split: Split) -> BatchLoader:
        return BatchLoader(
            split,
            t.eval_batch_size,
            device,
            limit_batches=t.limit_eval_batches,
            transform=eval_transform,
            **shard,
        )

    train_loader = BatchLoader(
        data.train,
        t.batch_size,
        device,
        shuffle=True,
        seed=t.seed,
        limit_batches=t.limit_train_batches,
        transform=train_transform,
        **shard,
    )
    val = None if data.val is None else evaluation(data.val)
    return Loaders(train_loader, evaluation(data.test), val)


def log_setup(
    cfg: DictConfig,
    net: torch.nn.Module,
    device: torch.device,
    data: DataBundle,
    here: distributed.Place,
) -> None:
    t = cfg.trainer
    log.info(
        "model %s (%s parameters) on %s; %d train / %d val / %d test images, %d classes",
        cfg.model.name,
        f"{sum(p.numel() for p in net.parameters()):,}",
        device,
        len(data.train),
        0 if data.val is None else len(data.val),
        len(data.test),
        len(data.classes),
    )
    log.info(
        "batch %d (global) = %d process(es) x %d; channels_last %s, compile %s",
        t.batch_size,
        here.world_size,
        t.batch_size // here.world_size,
        t.channels_last,
        t.compile_mode if t.compile else "off",
    )


def run_hparams(cfg: DictConfig, overrides: list[str], params: int | None = None) -> dict[str, Any]:
    """The run's entries in TensorBoard's HParams: the keys typed, then a curated set."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["model"]["params"] = params
    return select_hparams(config, override_keys(overrides))


def describe_run(config_yaml: str, overrides: list[str]) -> dict[str, str]:
    """What produced the run, for TensorBoard's Text tab: the composed config, the overrides
    typed, the command line and the commit of the code when it is a git checkout."""
    texts = {
        "config": config_yaml,
        "overrides": "\n".join(overrides) or "(none: the defaults)",
        "command": shlex.join(sys.orig_argv),
    }
    commit = git_commit()
    if commit:
        texts["git_commit"] = commit
    return texts


def typed_overrides(run_dir: Path, now: list[str], resumed_from: Path | None) -> list[str]:
    """The overrides typed for this run; for a resumed run, those of its first start (which
    its .hydra/ keeps) before this attempt's."""
    first = run_dir / ".hydra" / "overrides.yaml"
    earlier = list(OmegaConf.load(first)) if resumed_from and first.exists() else []
    return list(dict.fromkeys([*earlier, *now]))  # a resumed sweep job repeats its own


def prepare_resume(
    cfg: DictConfig, overrides: list[str]
) -> tuple[DictConfig, dict[str, Any], Path]:
    """The config, checkpoint state and checkpoint path to continue the run `cfg.resume` names."""
    path = find_checkpoint(cfg.resume)
    state = load_checkpoint(path)
    progress = state.get("progress", {})
    resumed = resume_config(
        saved_config(state["config"], str(path)), cfg, overrides, progress.get("epoch", 0)
    )
    if progress.get("epoch") == resumed.trainer.epochs and not progress.get("batch"):
        raise UserError(
            f"the run in {path.parent.parent} already finished its {resumed.trainer.epochs} "
            "epochs; to train longer add trainer.epochs=<more>"
        )
    return resumed, state, path


# An absolute folder, so the configs are found however main is reached: `python -m`, the
# cifar-exp script, or a launcher's worker that imports this module.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def close_log_files(run_dir: Path) -> None:
    """Detach the log files Hydra opened in `run_dir` from the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (
            isinstance(handler, logging.FileHandler)
            and Path(handler.baseFilename).parent == run_dir
        ):
            root.removeHandler(handler)
            handler.close()


def continue_sweep_job(cfg: DictConfig, run_dir: Path) -> tuple[str, float | None]:
    """A sweep job facing an earlier attempt in its folder (the sweep is being continued):
    ('finished', its metric) or ('failed', None) to keep it as it is, else ('run', None)
    after pointing cfg.resume at its checkpoint or clearing the attempt."""
    step = plan_job(run_dir, cfg.rerun_failed)
    if step in ("finished", "failed"):
        # Its folder is the job's record as it ended: nothing more goes into its run.log, from
        # us or from the launcher (submitit logs the job's end).
        close_log_files(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text()) if step == "finished" else {}
        return step, sweep_metric(metrics["final"]) if metrics else None
    if step == "resume":
        cfg.resume = str(run_dir)
    else:
        clear_attempt(run_dir)
    return "run", None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    here = distributed.place()
    distributed.quiet_other_ranks(here)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    if in_sweep:
        step, metric = continue_sweep_job(cfg, run_dir)
        if step != "run":
            return metric
    if in_sweep and not cfg.trainer.num_threads:
        threads = threads_per_job(hydra_cfg.launcher)
        if threads:
            torch.set_num_threads(threads)
            log.info("%d CPU thread(s) for this job: jobs run side by side", threads)
    checkpoint, resumed_from = None, None
    if cfg.resume:
        try:
            cfg, checkpoint, resumed_from = prepare_resume(cfg, list(hydra_cfg.overrides.task))
        except UserError as err:  # refused before anything changed: the run stays as it was
            log.error("%s", err)
            if in_sweep:  # a job of a continued sweep: the others go on
                manifest = RunManifest(run_dir)
                manifest.start()
                manifest.finish("failed", str(err))
                return None
            sys.exit(1)
    manifest = RunManifest(run_dir, write=here.is_main)
    manifest.start(resumed_from)
    overrides = typed_overrides(run_dir, list(hydra_cfg.overrides.task), resumed_from)
    earlier_events = event_files(run_dir)
    try:
        final = train(cfg, run_dir, checkpoint, manifest, overrides)
    except Interrupted as stop:
        manifest.finish("interrupted", str(stop))
        log.error("%s", stop)
        if in_sweep:
            log.error(
                "continue the whole sweep with its command and hydra.sweep.dir=%s", run_dir.parent
            )
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        manifest.finish("interrupted", "KeyboardInterrupt (stopped at once)")
        raise
    except Exception as err:
        manifest.finish("failed", failure_reason(err))
        if resumed_from is None and here.is_main and event_files(run_dir) == earlier_events:
            # Failed before training wrote anything: HParams still lists the run, as failed.
            record_failure_before_training(run_dir, run_hparams(cfg, overrides), earlier_events)
        return job_failed(err, in_sweep)
    manifest.finish("ok")
    return sweep_metric(final)


def job_failed(err: Exception, in_sweep: bool) -> None:
    """After a run failed (its manifest says why): a sweep goes on, a single run exits 1 with
    one line for a user's mistake, or with the traceback for anything else."""
    if in_sweep:
        # One bad job must not end the sweep: its manifest says why, the others run. None,
        # not NaN: the Optuna sweeper marks a trial without a number as failed and goes on,
        # while a NaN makes it pass values to a failed trial, which Optuna rejects.
        if isinstance(err, UserError):
            log.error("job failed, the sweep goes on: %s", failure_reason(err))
        else:
            log.exception("job failed, the sweep goes on: %s", failure_reason(err))
        return None
    if isinstance(err, UserError):
        log.error("%s", err)
        sys.exit(1)
    raise err


def main() -> None:
    """`python -m cifar_exp.run`, alone or as each of torchrun's processes."""
    here = distributed.setup()
    if not here.is_main:
        # Rank 0 alone writes the run directory's .hydra/ record.
        sys.argv.append("hydra.output_subdir=null")
    if not here.distributed:
        hydra_main()
        return
    distributed.run_to_exit(hydra_main)


if __name__ == "__main__":
    # Run the function under its importable name, not __main__'s copy: launchers that send
    # the task to other processes (joblib, submitit) pickle it by reference.
    from cifar_exp.run import main as entrypoint

    entrypoint()
