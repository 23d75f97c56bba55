"""A config in, a Trainer out, in one phase: every part is built before the Trainer that
holds them, and nothing is assigned to it afterwards.

`build_trainer` builds; `ready_trainer` also loads the checkpoint a resume continues and
opens the run's record (HParams, Text tab), so that what it returns only has to fit().
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from cifar_exp.components.averaging import WeightAverage
from cifar_exp.components.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.components.pruning import trial_pruning
from cifar_exp.components.stop_rules import RuleStates, StopRule, early_stopping
from cifar_exp.config import check_effects, startup_keys, validate
from cifar_exp.datasets import DataBundle, Split, load_dataset
from cifar_exp.datasets.augment import build_mix, build_transforms, normalization
from cifar_exp.datasets.batches import BatchLoader, BatchTransform, to_model_input
from cifar_exp.datasets.subsets import part_of, stratified_subset
from cifar_exp.errors import ConfigError
from cifar_exp.models import (
    MODELS,
    EpochAware,
    InitializedFromData,
    ModelOptions,
    initialize_from_data,
)
from cifar_exp.models.stats import forward_flops, param_counts
from cifar_exp.records.checkpoint import (
    CHECKPOINT_DIR,
    Checkpointer,
    check_space,
    checkpoint_bytes,
    load_states,
    restore_rng,
)
from cifar_exp.records.manifest import RunManifest
from cifar_exp.runtime import distributed
from cifar_exp.runtime.device import (
    compile_model,
    describe_device,
    resolve_device,
    set_deterministic,
    use_channels_last,
)
from cifar_exp.tracking import RunTracker
from cifar_exp.tracking.pictures import Pictures
from cifar_exp.training.engine import Loaders, Progress, Trainer
from cifar_exp.training.precision import Precision
from cifar_exp.training.run_record import describe_run, run_hparams

log = logging.getLogger("cifar_exp")

INIT_IMAGES = 5000  # training images a data-dependent initialization sees (airbench's count)


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    manifest: RunManifest | None = None,
    fresh: bool = True,
    record: bool = True,
    sweep_dir: Path | None = None,
) -> tuple[Trainer, DictConfig]:
    """The Trainer the config describes, and the config completed with what the data
    decided (the number of classes, the normalization statistics), as checkpoints store it.
    `fresh`: a new run, not one a checkpoint continues (which holds data-dependent inits).
    `record=False`: its tracker and checkpointer write nothing (the lr finder's throwaway
    training). `sweep_dir`: the sweep folder of a sweep's job (trackers group its jobs by it)."""
    validate(cfg)
    t = cfg.trainer
    set_deterministic(t.deterministic)
    here = distributed.place()
    per_process = batch_per_process(t, here)
    device, precision = device_and_precision(cfg, here, manifest)
    torch.manual_seed(t.seed)
    data, cfg, (train_transform, eval_transform) = prepare_data(cfg, device)
    options = MODELS.options(cfg.model)
    # A checkpoint brings the weights: a resumed run fetches no pretrained ones.
    net = MODELS.build(options if fresh else options.without_pretrained()).to(device)
    init_s = (
        initialize_from_training_data(net, data, eval_transform, device, t.seed) if fresh else None
    )
    model = model_to_train(net, t, device, here)
    size = model_size(net, options, data)
    if manifest is not None:
        manifest.update(model=size)
    log_setup(cfg, size, device, data, here, per_process)
    loaders = build_loaders(data, cfg, device, here, train_transform, eval_transform)
    optimizer, scheduler, average = optimization(cfg, net, loaders.train)
    info = run_info(cfg, size, device, here, per_process)
    tracker = build_tracker(cfg, run_dir, info, here.is_main and record, sweep_dir)
    progress = Progress(device)
    stop_rules = build_stop_rules(t, loaders.val is not None, device)
    parts = {
        "model": net,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "progress": progress,
        "tracker": tracker,
        "scaler": precision.scaler if precision.scaler.is_enabled() else None,
        "average": average,
        "stop_rules": RuleStates(stop_rules) if stop_rules else None,
    }
    checkpointer = build_checkpointer(cfg, parts, run_dir / CHECKPOINT_DIR, data, tracker.write)
    pictures = Pictures(
        tracker, list(data.classes), train_transform, eval_transform, net, **picture_options(t)
    )
    trainer = Trainer(
        net=net,
        model=model,
        loaders=loaders,
        optimizer=optimizer,
        scheduler=scheduler,
        precision=precision,
        settings=t,
        tracker=tracker,
        progress=progress,
        checkpointer=checkpointer,
        pictures=pictures,
        average=average,
        init_s=init_s,
        stop_rules=stop_rules,
    )
    return trainer, cfg


def optimization(
    cfg: DictConfig, net: torch.nn.Module, train: BatchLoader
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, WeightAverage | None]:
    """The optimizer, its schedule over the run's steps and the weight average (if any)."""
    t = cfg.trainer
    optimizer = OPTIMIZERS.build(cfg.optimizer, net)
    steps_per_epoch, total_steps = plan_steps(t, train)
    scheduler = SCHEDULERS.build(cfg.scheduler, optimizer, total_steps, steps_per_epoch)
    average = weight_average(t, net, steps_per_epoch, total_steps) if t.ema_decay else None
    return optimizer, scheduler, average


def build_tracker(
    cfg: DictConfig, run_dir: Path, info: dict[str, Any], write: bool, sweep_dir: Path | None
) -> RunTracker:
    """The run's record: metrics.json and the trackers `tracker=[...]` chose (tracking/)."""
    trackers = OmegaConf.to_container(cfg.tracker)
    return RunTracker(run_dir, info, write=write, trackers=trackers, sweep_dir=sweep_dir)


def build_stop_rules(t: DictConfig, has_val: bool, device: torch.device) -> list[StopRule]:
    """The rules that may end training before its last epoch (stop_rules.py)."""
    rules: list[StopRule] = []
    stopping = t.early_stopping
    if stopping.monitor is not None:
        rules.append(
            early_stopping(
                stopping.monitor, stopping.mode, stopping.patience, stopping.min_delta, has_val
            )
        )
    if (pruning := trial_pruning(has_val, device)) is not None:  # a job of a search with a pruner
        rules.append(pruning)
    return rules


def batch_per_process(t: DictConfig, here: distributed.Place) -> int:
    """Each process's share of the global batch, which must split evenly over the processes
    (and their micro-batches); torch's CPU threads set as asked."""
    if t.batch_size % here.world_size:
        raise ConfigError(
            f"trainer.batch_size={t.batch_size} is the global batch and must be divisible by "
            f"the {here.world_size} processes; use a multiple of {here.world_size}"
        )
    parts = here.world_size * t.accumulate_grad_batches
    if t.batch_size % parts:
        raise ConfigError(
            f"trainer.accumulate_grad_batches={t.accumulate_grad_batches}: trainer.batch_size="
            f"{t.batch_size} (the global batch) must be divisible by {here.world_size} "
            f"process(es) x {t.accumulate_grad_batches} micro-batches; use a multiple of {parts}"
        )
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    return t.batch_size // here.world_size


def model_to_train(
    net: torch.nn.Module, t: DictConfig, device: torch.device, here: distributed.Place
) -> torch.nn.Module:
    """What trains `net`: in NHWC if asked, wrapped for several processes, compiled if asked."""
    if t.channels_last:
        use_channels_last(net)
    model = distributed.wrap(net, device, here, freezes_parameters=isinstance(net, EpochAware))
    return compile_model(model, t.compile_mode) if t.compile else model


def picture_options(t: DictConfig) -> dict[str, Any]:
    return {"images": t.log_images, "histogram_every": t.histogram_every, "graph": t.log_graph}


def ready_trainer(
    cfg: DictConfig,
    run_dir: Path,
    manifest: RunManifest | None = None,
    checkpoint: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    sweep_dir: Path | None = None,
) -> Trainer:
    """build_trainer, then the checkpoint's states loaded (when continuing) and the run's
    record opened: TensorBoard's HParams lists the keys typed (`overrides`) first; the
    trackers' run ids go into the manifest (and with the tracker's state, the checkpoints)."""
    if checkpoint is None:  # a resume keeps what it was started with
        check_effects(cfg)
    trainer, cfg = build_trainer(
        cfg, run_dir, manifest, fresh=checkpoint is None, sweep_dir=sweep_dir
    )
    if checkpoint is not None:
        continue_from(trainer, checkpoint)
    options = MODELS.options(cfg.model)
    size = model_size(trainer.net, options, trainer.checkpointer.meta["input_shape"])
    config_yaml = trainer.checkpointer.meta["config"]
    trainer.tracker.start(
        run_hparams(cfg, overrides or [], size), describe_run(config_yaml, overrides or [])
    )
    if manifest is not None and trainer.tracker.run_ids:
        manifest.update(tracker_runs=trainer.tracker.run_ids)
    return trainer


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


def plan_steps(t: DictConfig, train: BatchLoader) -> tuple[int, int]:
    """(steps of a full epoch, steps of the whole run): the one place that counts them.
    With trainer.last_epoch_fraction < 1 the last epoch stops after ceil(fraction x its
    batches), as airbench's ceil(9.9 x 48) steps; the loader is told so."""
    per_epoch = len(train)
    if t.last_epoch_fraction == 1 or t.epochs == 0:
        return per_epoch, t.epochs * per_epoch
    # round() first: 0.9 x 48 is 43.2000...01 in floats, and an exact 43.0 must not become 44.
    last = max(1, math.ceil(round(t.last_epoch_fraction * per_epoch, 6)))
    train.limit_epoch(t.epochs, last)
    return per_epoch, (t.epochs - 1) * per_epoch + last


def weight_average(
    t: DictConfig, net: torch.nn.Module, steps_per_epoch: int, total_steps: int
) -> WeightAverage:
    return WeightAverage(
        net,
        t.ema_decay,
        t.ema_every,
        t.ema_lookahead,
        start_step=round(t.ema_start_epochs * steps_per_epoch),
        total_steps=max(total_steps, 1),
        ramp_pow=t.ema_ramp_pow,
        sync=t.ema_sync,
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
    check_num_classes(completed.model.num_classes, len(data.classes))
    augment = OmegaConf.to_container(completed.augment)
    return data, completed, build_transforms(augment, data.train, seed=cfg.trainer.seed)


def check_num_classes(num_classes: int | None, classes: int) -> None:
    """A model with fewer outputs than the data has classes cannot be trained on it."""
    if num_classes is not None and num_classes < classes:
        raise ConfigError(
            f"model.num_classes={num_classes} but the data set has {classes} classes (labels "
            f"0 to {classes - 1}); drop model.num_classes (it follows the data set) or set "
            f"model.num_classes={classes}"
        )


def check_before_start(cfg: DictConfig, folder: Path) -> None:
    """What a new run can be refused for from its config alone, before anything is written
    (RunDirGuard calls it): a model with fewer outputs than the data set's classes, when the
    config says how many (dataset.num_classes), and a disk without room for two checkpoints,
    from the model built on the meta device (which takes no memory and reads no data).
    `folder` is the run folder or, before it exists, the nearest folder above it."""
    classes = cfg.dataset.get("num_classes")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    if classes is not None:
        check_num_classes(model.get("num_classes"), classes)
    model["num_classes"] = model.get("num_classes") or classes or 10  # only to count
    try:
        with torch.device("meta"):
            net = MODELS.build(model)
    except ConfigError:  # a bad model option: the build reports it, as the run's failure
        return
    check_space(folder, checkpoint_bytes(sum(p.numel() for p in net.parameters())))


def initialize_from_training_data(
    net: torch.nn.Module,
    data: DataBundle,
    eval_transform: BatchTransform | None,
    device: torch.device,
    seed: int,
) -> float | None:
    """Run the model's data-dependent initialization (airbench's whitening), if it has one,
    on INIT_IMAGES training images of every class (a stratified subset chosen by `seed`) as
    evaluation sees them; its time in seconds."""
    if not isinstance(net, InitializedFromData):
        return None
    start = time.perf_counter()
    # All classes, as in the split (an image folder's first 5,000 are all airplanes).
    index = stratified_subset(data.train.labels, INIT_IMAGES, seed)
    images = to_model_input(data.train.images[index.to(data.train.images.device)], device)
    if eval_transform is not None:
        images = eval_transform(images, torch.Generator())
    initialize_from_data(net, images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    log.info(
        "initialized %s from %d training images in %.2fs", type(net).__name__, len(images), seconds
    )
    return seconds


def model_size(
    net: torch.nn.Module, options: ModelOptions, data: DataBundle | list[int]
) -> dict[str, int]:
    """The model's parameters and the FLOPs of one forward pass on one of the data's images
    (or one of this [C, H, W] shape), counted on the meta device (models/stats.py): a few
    milliseconds for LeNet5, a tenth of a second for WRN-28-10, whatever the device."""
    shape = data if isinstance(data, list) else list(data.train.images.shape[1:])
    trainable, frozen = param_counts(net)
    flops = forward_flops(options, tuple(shape))
    return {"params": trainable + frozen, "trainable": trainable, "frozen": frozen, "flops": flops}


def run_info(
    cfg: DictConfig,
    size: dict[str, int],
    device: torch.device,
    here: distributed.Place,
    per_process: int,
) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "params": size["params"],
        "flops": size["flops"],
        "device": str(device),
        "world_size": here.world_size,
        "batch_size_per_process": per_process,
    }


def build_checkpointer(
    cfg: DictConfig, parts: dict[str, Any], folder: Path, data: DataBundle, write: bool
) -> Checkpointer:
    """Checkpoints of every part whose state continuing needs (None: not in this run), with
    the completed config (without how this attempt started), the class names and the input
    shape."""
    stored = OmegaConf.to_container(cfg, resolve=True)
    for key in startup_keys():
        stored.pop(key, None)
    checkpointer = Checkpointer(
        folder,
        {name: part for name, part in parts.items() if part is not None},
        {
            "config": OmegaConf.to_yaml(OmegaConf.create(stored)),
            "classes": list(data.classes),
            "input_shape": list(data.train.images.shape[1:]),
        },
        write=write,
    )
    checkpointer.check_space(checkpoint_bytes(sum(p.numel() for p in parts["model"].parameters())))
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
    cfg: DictConfig,
    device: torch.device,
    here: distributed.Place,
    train_transform: BatchTransform | None,
    eval_transform: BatchTransform | None,
) -> Loaders:
    """This process's share of the train, test and (if held out) val splits, in batches; the
    training batches mixed as augment.* asks (MixUp, CutMix) and prepared ahead by
    augment.workers processes."""
    t = cfg.trainer
    mix = build_mix(OmegaConf.to_container(cfg.augment), cfg.dataset.num_classes)
    workers = cfg.augment.workers
    shard = {"rank": here.rank, "world_size": here.world_size}

    def evaluation(split: Split) -> BatchLoader:
        if t.limit_eval_batches:  # a part that stands for the whole split, not its first N
            split = part_of(split, t.limit_eval_batches * t.eval_batch_size, cfg.dataset.split_seed)
        return BatchLoader(split, t.eval_batch_size, device, transform=eval_transform, **shard)

    train_loader = BatchLoader(
        data.train,
        t.batch_size,
        device,
        shuffle=True,
        seed=t.seed,
        limit_batches=t.limit_train_batches,
        transform=train_transform,
        mix=mix,
        workers=workers,
        drop_last=t.drop_last,
        **shard,
    )
    val = None if data.val is None else evaluation(data.val)
    return Loaders(train_loader, evaluation(data.test), val)


def log_setup(
    cfg: DictConfig,
    size: dict[str, int],
    device: torch.device,
    data: DataBundle,
    here: distributed.Place,
    per_process: int,
) -> None:
    t = cfg.trainer
    frozen = f", {size['frozen']:,} frozen" if size["frozen"] else ""
    log.info(
        "model %s (%s parameters%s, %s FLOPs per image) on %s; %d train / %d val / %d test "
        "images, %d classes",
        cfg.model.name,
        f"{size['params']:,}",
        frozen,
        f"{size['flops'] / 1e6:,.2f}M",
        device,
        len(data.train),
        0 if data.val is None else len(data.val),
        len(data.test),
        len(data.classes),
    )
    per_class = cfg.dataset.get("max_per_class")
    if per_class:
        log.info(
            "dataset.max_per_class=%d keeps the first %d images of each class in every split, "
            "the test split included",
            per_class,
            per_class,
        )
    if not (t.progress_bar and sys.stdout.isatty()):
        why = "stdout is not a terminal" if t.progress_bar else "trainer.progress_bar=false"
        every = f"every {t.log_interval_s:g}s" if t.log_interval_s else "never"
        log.info("no progress bar (%s): a progress line %s (trainer.log_interval_s)", why, every)
    k = t.accumulate_grad_batches
    log.info(
        "batch %d (global) = %d process(es) x %d%s; channels_last %s, compile %s",
        t.batch_size,
        here.world_size,
        per_process,
        f" in {k} micro-batches of {per_process // k}" if k > 1 else "",
        t.channels_last,
        t.compile_mode if t.compile else "off",
    )
