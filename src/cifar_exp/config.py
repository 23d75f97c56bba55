"""The run's top-level config schema and the groups that have no registry.

Every group option's YAML file starts from a schema (these, or one a component registered),
so a misspelled key or a value of the wrong type fails while Hydra composes the config,
before anything runs. Ranges that a type cannot express are checked by each schema's
`check`, beside its fields; `validate` runs them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from cifar_exp.components.averaging import EMA_SYNCS
from cifar_exp.components.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.components.stop_rules import MODES, MONITORS
from cifar_exp.components.tta import TTA_MODES
from cifar_exp.datasets import DATASETS
from cifar_exp.datasets.augment import FLIP_MODES, POLICIES
from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.registry import (
    COMPARED,
    PLUMBING,
    RESUMABLE,
    STARTUP,
    option,
    require,
    typed_options,
)

DEVICE_TYPES = ("auto", "cpu", "cuda")
WANDB_MODES = ("offline", "online", "disabled")  # tracker.wandb.mode
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def require_one_of(value: str, key: str, choices: tuple[str, ...]) -> None:
    require(value in choices, key, f"one of {', '.join(choices)}", value)


@dataclass
class AugmentConfig:
    name: str = option("none", compared=True)
    crop_padding: int = 0  # random crop of the image padded by this many zero pixels per side
    # Random crop of the image padded by this many reflected pixels per side (airbench's
    # translate); an alternative to crop_padding.
    translate: int = 0
    flip: bool = False  # horizontal flip
    # random: each image with probability 1/2 every epoch; alternate: a fixed random half on
    # even epochs, exactly the other half on odd epochs (airbench's scheme).
    flip_mode: str = "random"
    normalize: bool = False  # subtract the mean, divide by the std (per channel)
    mean: list[float] | None = None  # null: computed from the training split
    std: list[float] | None = None
    # A torchvision policy applied to each image after crop and flip: none, autoaugment (its
    # CIFAR-10 policy), randaugment (num_ops, magnitude), trivialaugment (TrivialAugmentWide).
    policy: str = option("none", compared=True)
    num_ops: int = 2  # randaugment: operations per image
    magnitude: int = 9  # randaugment: their strength, 0 to 30 (torchvision's 31 bins)
    cutout: int = 0  # side in pixels of the square zeroed in each image (DeVries 2017); 0 = off
    mixup_alpha: float = 0.0  # MixUp's Beta(alpha, alpha) for the mixing ratio; 0 = off
    cutmix_alpha: float = 0.0  # CutMix's, likewise
    mix_prob: float = 1.0  # the probability that a batch is mixed at all (timm's mix_prob)
    # With both alphas set: the probability of CutMix for a batch, else MixUp (timm's).
    switch_prob: float = 0.5
    # Processes that prepare the next training batches while the model trains on the CPU
    # or GPU (worth it for a per-image policy); 0: prepared in the training loop. Batches
    # are the same either way.
    workers: int = option(0, plumbing=True, resumable=True)

    def check(self) -> None:
        require(self.crop_padding >= 0, "crop_padding", ">= 0", self.crop_padding)
        require(self.translate >= 0, "translate", ">= 0", self.translate)
        ok = not (self.crop_padding and self.translate)
        require(ok, "translate", "0 when crop_padding is set (one kind of crop)", self.translate)
        require_one_of(self.flip_mode, "flip_mode", FLIP_MODES)
        ok = self.mean is None or len(self.mean) == 3
        require(ok, "mean", "three numbers (RGB) or null", self.mean)
        ok = self.std is None or (len(self.std) == 3 and min(self.std) > 0)
        require(ok, "std", "three numbers > 0 or null", self.std)
        require_one_of(self.policy, "policy", POLICIES)
        require(self.num_ops >= 1, "num_ops", ">= 1", self.num_ops)
        require(0 <= self.magnitude <= 30, "magnitude", "in [0, 30]", self.magnitude)
        require(self.cutout >= 0, "cutout", ">= 0 (0 = off)", self.cutout)
        for key in ("mixup_alpha", "cutmix_alpha"):
            require(getattr(self, key) >= 0, key, ">= 0 (0 = off)", getattr(self, key))
        for key in ("mix_prob", "switch_prob"):
            require(0 <= getattr(self, key) <= 1, key, "in [0, 1]", getattr(self, key))
        require(self.workers >= 0, "workers", ">= 0 (0 = none)", self.workers)


@dataclass
class DeviceConfig:
    type: str = option("auto", plumbing=True, resumable=True)

    def check(self) -> None:
        require_one_of(self.type, "type", DEVICE_TYPES)


@dataclass
class EarlyStoppingConfig:
    """Stop when the monitored metric stops improving (stop_rules.py); off while monitor=null."""

    # val/acc, val/loss (the validation split, else the test split: with a warning, as it then
    # selects on the test set), train/acc, train/loss.
    monitor: str | None = None
    mode: str = "auto"  # min, max, or auto: max for an accuracy, min for a loss
    patience: int = 3  # evaluations without improvement before the run stops
    min_delta: float = 0.0  # an improvement is a change by more than this

    def check(self) -> None:
        if self.monitor is not None:
            require_one_of(self.monitor, "early_stopping.monitor", MONITORS)
        require_one_of(self.mode, "early_stopping.mode", MODES)
        require(self.patience >= 1, "early_stopping.patience", ">= 1", self.patience)
        require(self.min_delta >= 0, "early_stopping.min_delta", ">= 0", self.min_delta)


@dataclass
class GradClipConfig:
    """Gradient clipping before each optimizer step (after unscaling under fp16); null: off."""

    norm: float | None = None  # the total L2 norm of all gradients at most this (clip_grad_norm_)
    value: float | None = None  # every gradient element within [-value, value] (clip_grad_value_)

    def check(self) -> None:
        for key in ("norm", "value"):
            value = getattr(self, key)
            require(value is None or value > 0, f"grad_clip.{key}", "> 0 or null (off)", value)
        ok = self.norm is None or self.value is None
        require(ok, "grad_clip.value", "null when grad_clip.norm is set (one kind)", self.value)


@dataclass
class TensorBoardTracker:
    """tracker=[tensorboard]: event files in the run folder (tracking/tensorboard.py)."""


@dataclass
class CsvTracker:
    """tracker=[...,csv]: metrics.csv in the run folder (tracking/csv_writer.py)."""


@dataclass
class MlflowTracker:
    """tracker=[...,mlflow]: a run in an MLflow tracking store (tracking/mlflow_writer.py)."""

    # null: $MLFLOW_TRACKING_URI, else sqlite:///outputs/mlflow.db in the launch folder.
    tracking_uri: str | None = option(None, plumbing=True, resumable=True)
    experiment: str | None = option(None, plumbing=True, resumable=True)  # null: cifar-exp


@dataclass
class WandbTracker:
    """tracker=[...,wandb]: a Weights & Biases run (tracking/wandb_writer.py)."""

    project: str | None = option(None, plumbing=True, resumable=True)  # null: cifar-exp
    entity: str | None = option(None, plumbing=True, resumable=True)  # null: wandb's default
    # null: $WANDB_MODE, else offline (sync later with `wandb sync`).
    mode: str | None = option(None, plumbing=True, resumable=True)

    def check(self) -> None:
        modes = (None, *WANDB_MODES)
        require(self.mode in modes, "wandb.mode", f"one of {list(WANDB_MODES)} or null", self.mode)


@dataclass
class TrackerConfig:
    """Where the run's record goes besides metrics.json: `tracker=[tensorboard,mlflow]`
    picks conf/tracker/*.yaml, each filling in its key; an unpicked tracker stays null."""

    tensorboard: TensorBoardTracker | None = option(None, plumbing=True, resumable=True)
    csv: CsvTracker | None = option(None, plumbing=True, resumable=True)
    mlflow: MlflowTracker | None = option(None, plumbing=True, resumable=True)
    wandb: WandbTracker | None = option(None, plumbing=True, resumable=True)

    def check(self) -> None:
        if self.wandb is not None:
            self.wandb.check()


@dataclass
class TrainerConfig:
    epochs: int = option(10, resumable=True, compared=True)
    # The share of the last epoch's batches trained: epochs=10 with 0.9 trains airbench94's
    # 9.9 epochs (the schedule and the averaging are laid out over the steps trained).
    last_epoch_fraction: float = 1.0
    drop_last: bool = False  # leave out each epoch's last, partial batch (airbench does)
    batch_size: int = option(32, compared=True)  # the global batch
    eval_batch_size: int = option(500, plumbing=True, resumable=True)
    seed: int = option(0, compared=True)
    num_threads: int = option(0, plumbing=True, resumable=True)  # 0: torch's default
    log_every_n_steps: int = option(50, plumbing=True, resumable=True)
    eval_every: int = 1
    limit_train_batches: int | None = None  # batches of each epoch (its shuffled order)
    # Evaluate on this many batches' worth of images: a fixed part of the split drawn class by
    # class (dataset.split_seed chooses it), never its first images.
    limit_eval_batches: int | None = None
    # auto: bf16 where the hardware has it natively (runtime/device.py: choose_precision).
    precision: str = option("fp32", compared=True)
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    progress_bar: bool = option(True, plumbing=True, resumable=True)
    # Seconds between progress lines in the log when no progress bar shows (stdout is not a
    # terminal, or progress_bar=false); 0: none.
    log_interval_s: float = option(30.0, plumbing=True, resumable=True)
    checkpoint_every: int = option(1, plumbing=True, resumable=True)
    stop_on_nonfinite: bool = option(True, plumbing=True, resumable=True)
    # The training batch, confusion matrices, mistakes (pictures.py).
    log_images: bool = option(True, plumbing=True, resumable=True)
    # training batch, confusion matrices, mistakes (pictures.py)
    # Epochs between weight/gradient histograms; 0: none.
    histogram_every: int = option(0, plumbing=True, resumable=True)
    log_graph: bool = option(False, plumbing=True, resumable=True)  # a jit trace of the model
    label_smoothing: float = 0.0  # of the training loss's targets (evaluation's loss: none)
    # Averaged weights (averaging.py): an EMA with this decay per update; 0 = off.
    ema_decay: float = 0.0
    ema_every: int = 1  # optimizer steps between updates of the average
    ema_lookahead: bool = False  # set the trained weights to the average at each update
    ema_start_epochs: float = 0.0  # epochs trained before the average starts
    ema_ramp_pow: float = 0.0  # > 0: the decay grows as decay * (progress of training)^pow
    # When Lookahead (ema_lookahead) also sets the trained weights to the average: at the end
    # of every epoch ("epoch"), or only at the last step ("end", as airbench94 does).
    ema_sync: str = "epoch"
    tta: str = "none"  # test-time augmentation of evaluation: none, flip, flip_translate
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    grad_clip: GradClipConfig = field(default_factory=GradClipConfig)
    # Micro-batches per optimizer step: each process runs this many of
    # batch_size / (processes x accumulate_grad_batches) images, then steps once.
    accumulate_grad_batches: int = 1
    # torch.use_deterministic_algorithms, cuDNN's deterministic kernels (no benchmark), and
    # CUBLAS_WORKSPACE_CONFIG: the same numbers on a GPU from run to run, at some speed.
    deterministic: bool = option(False, plumbing=True, resumable=True)

    def check(self) -> None:
        for key in ("batch_size", "eval_batch_size", "log_every_n_steps", "eval_every"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        require(self.epochs >= 0, "epochs", ">= 0", self.epochs)
        fraction = self.last_epoch_fraction
        require(0 < fraction <= 1, "last_epoch_fraction", "in (0, 1]", fraction)
        require(
            self.num_threads >= 0, "num_threads", ">= 0 (0 = torch's default)", self.num_threads
        )
        every = self.checkpoint_every
        require(every >= 1, "checkpoint_every", ">= 1 (epochs between checkpoints)", every)
        every = self.log_interval_s
        require(every >= 0, "log_interval_s", ">= 0 (seconds; 0 = no progress lines)", every)
        every = self.histogram_every
        require(every >= 0, "histogram_every", ">= 0 (epochs between histograms; 0 = off)", every)
        for key in ("limit_train_batches", "limit_eval_batches"):
            value = getattr(self, key)
            require(value is None or value >= 1, key, ">= 1 or null", value)
        smoothing = self.label_smoothing
        require(0 <= smoothing < 1, "label_smoothing", "in [0, 1)", smoothing)
        require(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1) (0 = off)", self.ema_decay)
        require(self.ema_every >= 1, "ema_every", ">= 1", self.ema_every)
        require(self.ema_start_epochs >= 0, "ema_start_epochs", ">= 0", self.ema_start_epochs)
        require(self.ema_ramp_pow >= 0, "ema_ramp_pow", ">= 0 (0 = constant)", self.ema_ramp_pow)
        require_one_of(self.precision, "precision", PRECISIONS)
        require_one_of(self.compile_mode, "compile_mode", COMPILE_MODES)
        require_one_of(self.tta, "tta", TTA_MODES)
        self.early_stopping.check()
        self.grad_clip.check()
        k = self.accumulate_grad_batches
        require(k >= 1, "accumulate_grad_batches", ">= 1 (1 = no accumulation)", k)
        require_one_of(self.ema_sync, "ema_sync", EMA_SYNCS)


@dataclass
class Expected:
    """What an experiment preset reaches, and how that figure was obtained: documentation
    (the docs render it, the tests hold it to the preset's settings); no run reads it."""

    metric: str = "test_acc"  # the metrics.json `final` key it is: test_acc or best_test_acc
    value: float = MISSING  # as metrics.json writes it: 0.6293 for 62.93%
    epochs: int = MISSING  # trained for it
    val_size: int = 0  # the validation split held out of training for it
    seed: int | None = 0  # null: a figure quoted from elsewhere
    runs: int = 1  # the mean of this many runs, seeds `seed`, `seed` + 1, ...
    data: str | None = None  # the images it was measured on; null: the original CIFAR-10
    measured_by: str = MISSING  # the command that measured it, or the source that reports it
    machine: str | None = None  # where it was measured; null: quoted, not measured here
    date: str | None = None  # when it was measured (YYYY-MM-DD)


@dataclass
class Config:
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    dataset: Any = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    # A run directory or checkpoint to continue (see resume.py); relative to the launch folder.
    resume: str | None = option(None, plumbing=True, startup=True)
    # The run's name in its folder (outputs/<date>/<time>_<name>_<pid>) and so in TensorBoard;
    # null: the overrides typed. Jobs of a sweep are named by what the sweep varies instead.
    name: str | None = option(None, plumbing=True)
    # Continuing a sweep (-m into its folder) reruns its failed jobs too, from scratch.
    rerun_failed: bool = option(False, plumbing=True, startup=True)
    # What an experiment preset reaches (experiment/*.yaml); null for other configs.
    expected: Expected | None = option(None, plumbing=True, resumable=True)


@dataclass
class EvalConfig:
    """`python -m cifar_exp.eval`: score a checkpoint on its data set's test split."""

    ckpt: str = MISSING
    device: str = "auto"
    batch_size: int = 500
    # Where the data set lies now, if it moved since training (else the run's dataset.root).
    dataset_root: str | None = None
    tta: str = "none"  # test-time augmentation: none, flip, flip_translate (tta.py)
    # temperature: fit one temperature on the run's validation split (dataset.val_size) and
    # report the test scores before and after dividing the logits by it; none: no fit.
    calibrate: str = "none"
    # Robustness (docs/evaluation.md): CIFAR-10-C's corruptions of the test split: all, one
    # name, a list such as [fog,snow], or none; at these severities (1-5).
    corruptions: Any = "none"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    corruption_seed: int = 0  # the corrupted images are a function of (seed, image index)
    corruption_images: int | None = None  # a class-balanced part of the test split; null: all
    # A folder of CIFAR-10-C's own .npy files: score those instead of making the corruptions.
    cifar10c_dir: str | None = None
    # Extra test sets with the checkpoint's classes, each <folder>/<class>/<images>.
    test_folders: list[str] = field(default_factory=list)
    cache_dir: str = "${oc.env:CIFAR_EXP_CACHE,'~/.cache/cifar-exp'}"  # made corruptions
    gradcam: int = 16  # Grad-CAM maps of this many most confident mistakes (0: none)

    def check(self) -> None:
        require_one_of(self.device, "device", DEVICE_TYPES)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require_one_of(self.tta, "tta", TTA_MODES)
        require_one_of(self.calibrate, "calibrate", ("none", "temperature"))
        require(bool(self.severities), "severities", "a list of 1 to 5", self.severities)
        for severity in self.severities:
            require(severity in range(1, 6), "severities", "each in 1-5", severity)
        if self.corruptions not in (None, "none"):  # its module imports scipy and Pillow
            from cifar_exp.datasets.corruptions import CORRUPTIONS, corruption_names

            for name in corruption_names(self.corruptions):
                require_one_of(name, "corruptions", ("all", "none", *CORRUPTIONS))
        images = self.corruption_images
        require(images is None or images >= 1, "corruption_images", ">= 1 or null", images)
        require(self.gradcam >= 0, "gradcam", ">= 0", self.gradcam)


@dataclass
class PredictConfig:
    """`python -m cifar_exp.predict`: the top-k classes of image files."""

    ckpt: str = MISSING
    images: str = MISSING
    top_k: int = 5
    device: str = "auto"
    batch_size: int = 256
    tta: str = "none"  # test-time augmentation: none, flip, flip_translate (tta.py)

    def check(self) -> None:
        require_one_of(self.device, "device", DEVICE_TYPES)
        require(self.top_k >= 1, "top_k", ">= 1", self.top_k)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require_one_of(self.tta, "tta", TTA_MODES)


EXPORT_FORMATS = ("onnx", "torchscript", "exported")


@dataclass
class ExportConfig:
    """`python -m cifar_exp.export ckpt=<run or checkpoint> format=...`: the network as a file
    that runs without cifar-exp, checked against the model it came from."""

    ckpt: str = MISSING
    format: str = "onnx"  # onnx (onnxruntime runs it), torchscript, exported (torch.export)
    check_images: int = 1000  # test images the exported file and the model both score
    # The largest |logit difference| the check accepts (float32 kernels differ a little).
    tolerance: float = 1e-3
    dataset_root: str | None = None  # where the data set lies now, if it moved

    def check(self) -> None:
        require_one_of(self.format, "format", EXPORT_FORMATS)
        require(self.check_images >= 1, "check_images", ">= 1", self.check_images)
        require(self.tolerance > 0, "tolerance", "> 0", self.tolerance)


@dataclass
class ModelSummaryOptions:
    """`python -m cifar_exp.model_summary <run overrides> [model_summary.<key>=...]`: the table."""

    depth: int = 2  # module levels the table shows (1: the model's children)
    # Measure the activation memory of one training batch (a forward and backward pass of
    # trainer.batch_size random images on the device); false: shapes, parameters, FLOPs only.
    memory: bool = True

    def check(self) -> None:
        require(self.depth >= 1, "depth", ">= 1 (1: the model's children)", self.depth)


@dataclass
class ModelSummaryConfig(Config):
    """A run's config, and the model summary's options under `model_summary.`."""

    model_summary: ModelSummaryOptions = field(default_factory=ModelSummaryOptions)


@dataclass
class LrFindOptions:
    """`python -m cifar_exp.lr_find <run overrides> [lr_find.<key>=...]`: Smith's range test."""

    start_lr: float = 1e-7  # the first step's lr (of the optimizer's main parameter group)
    end_lr: float = 10.0  # the last step's, reached after num_steps; exponential in between
    num_steps: int = 100  # training steps of the sweep at most
    # Weight of the previous smoothed loss in its exponential moving average (debiased).
    smoothing: float = 0.98
    # Stop once the smoothed loss, or one step's loss, exceeds the lowest smoothed loss so far
    # by this factor (or is not finite): the loss diverged, larger lrs say nothing more.
    diverge_factor: float = 4.0
    # Points left out at the start of the curve when choosing the steepest descent before
    # the lowest smoothed loss (the smoothed loss has not settled there yet).
    skip_start: int = 10

    def check(self) -> None:
        require(self.start_lr > 0, "start_lr", "> 0", self.start_lr)
        ok = self.end_lr > self.start_lr
        require(ok, "end_lr", f"> start_lr ({self.start_lr:g})", self.end_lr)
        require(self.num_steps >= 2, "num_steps", ">= 2", self.num_steps)
        require(0 <= self.smoothing < 1, "smoothing", "in [0, 1) (0 = none)", self.smoothing)
        require(self.diverge_factor > 1, "diverge_factor", "> 1", self.diverge_factor)
        require(self.skip_start >= 0, "skip_start", ">= 0", self.skip_start)


@dataclass
class LrFindConfig(Config):
    """A run's config, and the range test's options under `lr_find.`."""

    lr_find: LrFindOptions = field(default_factory=LrFindOptions)


def check_entrypoint(
    schema: type[EvalConfig] | type[PredictConfig] | type[ExportConfig], cfg: DictConfig
) -> None:
    """Raise ConfigError naming the first value of eval's or predict's config that cannot
    work (their keys are typed at the top level: `tta=flip`)."""
    schema(**{f.name: cfg[f.name] for f in fields(schema)}).check()


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore: the top-level ones, the sections' and each
    registered component's."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="model_summary_schema", node=ModelSummaryConfig)
    cs.store(name="lr_find_schema", node=LrFindConfig)
    for group, node in SECTIONS.items():
        cs.store(name=f"{group}_{group}_schema", node=node)
    for registry in REGISTRIES:
        registry.store_schemas()


REGISTRIES = (MODELS, OPTIMIZERS, SCHEDULERS, DATASETS)
# The groups with one schema each (the others are a registry's component options).
SECTIONS = {
    "augment": AugmentConfig,
    "device": DeviceConfig,
    "trainer": TrainerConfig,
    "tracker": TrackerConfig,
}


def validate(cfg: DictConfig, schema: type[Config] = Config) -> None:
    """Raise ConfigError naming the first value that cannot work, or a top-level key that
    `schema` (the run's Config, or a tool's that extends it) does not have: one added with
    `+key=...` would be carried along and do nothing."""
    known = {f.name for f in fields(schema)} | {"hydra"}
    for key in cfg:
        if key not in known:
            hint = OUTPUT_DIR_HINT if key == "output_dir" else "drop it"
            raise ConfigError(
                f"{key} is not a key of cifar-exp's config and would do nothing; {hint}"
            )
    for group, schema_of_group in SECTIONS.items():
        typed_options(group, schema_of_group, cfg[group])
    for registry in REGISTRIES:
        registry.options(cfg[registry.group])


OUTPUT_DIR_HINT = (
    "a run's folder is set with hydra.run.dir=<folder> (a sweep's with hydra.sweep.dir=...)"
)

# Keys that only act when another key turns them on: (section, keys, whether they act, what
# turns them on). A value other than the default on an idle key is refused (check_effects).
DEPENDENT_KEYS: list[tuple[str, tuple[str, ...], Callable[[DictConfig], bool], str]] = [
    (
        "trainer",
        ("early_stopping.mode", "early_stopping.patience", "early_stopping.min_delta"),
        lambda c: c.trainer.early_stopping.monitor is not None,
        "trainer.early_stopping.monitor is null; set it to one of " + ", ".join(MONITORS),
    ),
    (
        "trainer",
        ("compile_mode",),
        lambda c: c.trainer.compile,
        "trainer.compile=false; add trainer.compile=true",
    ),
    (
        "trainer",
        ("ema_every", "ema_lookahead", "ema_start_epochs", "ema_ramp_pow", "ema_sync"),
        lambda c: c.trainer.ema_decay > 0,
        "trainer.ema_decay=0 (no averaged weights); set trainer.ema_decay, e.g. 0.999",
    ),
    (
        "augment",
        ("flip_mode",),
        lambda c: c.augment.flip,
        "augment.flip=false; add augment.flip=true",
    ),
    (
        "augment",
        ("mean", "std"),
        lambda c: c.augment.normalize,
        "augment.normalize=false; add augment.normalize=true",
    ),
    (
        "augment",
        ("num_ops", "magnitude"),
        lambda c: c.augment.policy == "randaugment",
        "augment.policy is not randaugment; add augment.policy=randaugment",
    ),
    (
        "augment",
        ("mix_prob",),
        lambda c: c.augment.mixup_alpha > 0 or c.augment.cutmix_alpha > 0,
        "neither MixUp nor CutMix is on; set augment.mixup_alpha or augment.cutmix_alpha",
    ),
    (
        "augment",
        ("switch_prob",),
        lambda c: c.augment.mixup_alpha > 0 and c.augment.cutmix_alpha > 0,
        "MixUp and CutMix are not both on (it picks between them); set both alphas",
    ),
    (
        "dataset",
        ("val_stratified",),
        lambda c: c.dataset.val_size > 0,
        "dataset.val_size=0 (no validation split); set dataset.val_size, e.g. 5000",
    ),
    (
        "dataset",
        ("split_seed",),
        lambda c: c.dataset.val_size > 0 or c.trainer.limit_eval_batches is not None,
        "neither dataset.val_size nor trainer.limit_eval_batches is set (it chooses their images)",
    ),
]


def check_effects(cfg: DictConfig) -> None:
    """Refuse, in one line, a value set on a key that does nothing in this config (a
    patience without a monitor, a compile mode without compiling, ...): the run would go on
    as if it had not been typed. Checked when a run starts, not when one resumes."""
    defaults_of: dict[str, DictConfig] = {}
    for section, keys, acts, needs in DEPENDENT_KEYS:
        if acts(cfg):
            continue
        if section not in defaults_of:
            defaults_of[section] = OmegaConf.structured(schema_of(cfg, section))
        defaults = defaults_of[section]
        for key in keys:
            value, default = OmegaConf.select(cfg[section], key), OmegaConf.select(defaults, key)
            if value is not None and value != default:
                raise ConfigError(
                    f"{section}.{key}={value} has no effect while {needs}, or drop {section}.{key}"
                )


def schema_of(cfg: DictConfig, section: str) -> type:
    """The schema a section of `cfg` is typed by (a registry's component, or a section's)."""
    if section in SECTIONS:
        return SECTIONS[section]
    registry = {r.group: r for r in REGISTRIES}[section]
    return registry.schema(cfg[section].name)


# The groups in the order HParams shows their compared keys.
GROUP_ORDER = (
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "augment",
    "dataset",
    "device",
    "tracker",
)


def schema_fields() -> Iterator[tuple[str, list[Field]]]:
    """(key, its declarations) for every key a config can hold: the top-level keys, the
    sections' and every registered component's. A key declared by several schemas (a base and
    the subclasses that change its default) has a declaration from each."""
    registries = {r.group: r for r in REGISTRIES}
    for f in fields(Config):
        if f.name not in SECTIONS and f.name not in registries:
            yield f.name, [f]
    for group in GROUP_ORDER:
        schemas = [SECTIONS[group]] if group in SECTIONS else registries[group].schemas()
        found: dict[str, list[Field]] = {}
        for schema in schemas:
            for f in fields(schema):
                found.setdefault(f.name, [])
            for cls in schema.__mro__:
                if is_dataclass(cls):
                    for name, f in cls.__dataclass_fields__.items():
                        found[name].append(f)
        for name, declared in found.items():
            yield f"{group}.{name}", declared


def keys_with(fact: str) -> tuple[str, ...]:
    """The keys for which `fact` (registry.PLUMBING, RESUMABLE, STARTUP, COMPARED) holds."""
    return tuple(
        key for key, declared in schema_fields() if any(f.metadata.get(fact) for f in declared)
    )


def is_plumbing(key: str) -> bool:
    """Whether `key` (or the group an override picks) says only where or how a run runs."""
    plumbing = keys_with(PLUMBING)
    if any(key == p or key.startswith(f"{p}.") for p in plumbing):
        return True
    group = [k for k, _ in schema_fields() if k.startswith(f"{key}.")]
    return bool(group) and all(k in plumbing for k in group)


def resumable_keys() -> tuple[str, ...]:
    return keys_with(RESUMABLE)


def startup_keys() -> tuple[str, ...]:
    return keys_with(STARTUP)


def compared_keys() -> tuple[str, ...]:
    """HParams' columns in every run, the model's parameter count and FLOPs per image after
    its options."""
    keys = keys_with(COMPARED)
    last_model = max(i for i, k in enumerate(keys) if k.startswith("model."))
    return (*keys[: last_model + 1], "model.params", "model.flops", *keys[last_model + 1 :])
