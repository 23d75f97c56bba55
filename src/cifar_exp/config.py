"""Typed config schemas (registered in Hydra's ConfigStore) and value checks.

Every group option's YAML file starts from one of these schemas, so a misspelled key or a
value of the wrong type fails while Hydra composes the config, before anything runs.
Ranges that a type cannot express are checked by `validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from cifar_exp.errors import ConfigError


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass
class NoSchedulerConfig:
    name: str = "none"


@dataclass
class CosineConfig:
    name: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0


@dataclass
class OneCycleConfig:
    name: str = "onecycle"
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4


@dataclass
class StepConfig:
    name: str = "step"
    step_epochs: int = 30
    gamma: float = 0.1
    warmup_epochs: float = 0.0


# Where data sets live unless dataset.root says otherwise; relative to the launch folder.
DATA_ROOT = "${oc.env:CIFAR_EXP_DATA,data}"


@dataclass
class DatasetConfig:
    """Options every source shares; run.py consumes them, the source never sees them."""

    name: str = MISSING
    num_classes: int | None = 10
    val_size: int = 0  # images held out of train (seeded by split_seed) for per-epoch eval
    split_seed: int = 0
    on_device: bool = False  # keep the whole uint8 data set on the training device


@dataclass
class Cifar10Config(DatasetConfig):
    name: str = "cifar10"
    root: str = DATA_ROOT
    download: bool = True
    cache: bool = True


@dataclass
class Cifar100Config(Cifar10Config):
    name: str = "cifar100"
    num_classes: int | None = 100


@dataclass
class ImageFolderConfig(DatasetConfig):
    name: str = "imagefolder"
    root: str = DATA_ROOT
    num_classes: int | None = None  # null: as many as the folder has
    image_size: int = 32
    max_per_class: int | None = None  # keep the first N files (sorted) of each class folder
    skip_bad_files: bool = False
    num_workers: int = 2
    cache_dir: str = "${oc.env:CIFAR_EXP_CACHE,'~/.cache/cifar-exp'}"


@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    train_size: int = 2000
    test_size: int = 500
    image_size: int = 32
    noise: float = 48.0
    seed: int = 0


@dataclass
class AugmentConfig:
    name: str = "none"
    crop_padding: int = 0  # random crop of the image padded by this many zero pixels per side
    flip: bool = False  # random horizontal flip
    normalize: bool = False  # subtract the mean, divide by the std (per channel)
    mean: list[float] | None = None  # null: computed from the training split
    std: list[float] | None = None


@dataclass
class DeviceConfig:
    type: str = "auto"


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 500
    seed: int = 0
    num_threads: int = 0
    log_every_n_steps: int = 50
    eval_every: int = 1
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"
    progress_bar: bool = True
    checkpoint_every: int = 1
    stop_on_nonfinite: bool = True
    log_images: bool = True  # training batch, confusion matrices, mistakes (figures.py)
    histogram_every: int = 0  # epochs between weight/gradient histograms; 0: none
    log_graph: bool = False  # the model graph (a jit trace at the start)


@dataclass
class Config:
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    dataset: Any = MISSING
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # A run directory or checkpoint to continue (see run.py); relative to the launch folder.
    resume: str | None = None
    # The run's name in its folder (outputs/<date>/<time>_<name>_<pid>) and so in TensorBoard;
    # null: the overrides typed. Jobs of a sweep are named by what the sweep varies instead.
    name: str | None = None
    # Continuing a sweep (-m into its folder) reruns its failed jobs too, from scratch.
    rerun_failed: bool = False


# Keys that say where files go, where or how visibly a run runs, not what it trains: left
# out of a run's default name and of TensorBoard's HParams. A key or a whole group.
PLUMBING = (
    "name",
    "resume",
    "rerun_failed",
    "device",
    "trainer.progress_bar",
    "trainer.num_threads",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every",
    "trainer.eval_batch_size",
    "trainer.stop_on_nonfinite",
    "trainer.log_images",
    "trainer.histogram_every",
    "trainer.log_graph",
    "dataset.root",
    "dataset.cache_dir",
    "dataset.cache",
    "dataset.download",
    "dataset.num_workers",
)


def is_plumbing(key: str) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in PLUMBING)


@dataclass
class EvalConfig:
    """`python -m cifar_exp.eval`: score a checkpoint on its data set's test split."""

    ckpt: str = MISSING
    device: str = "auto"
    batch_size: int = 500
    # Where the data set lies now, if it moved since training (else the run's dataset.root).
    dataset_root: str | None = None


@dataclass
class PredictConfig:
    """`python -m cifar_exp.predict`: the top-k classes of image files."""

    ckpt: str = MISSING
    images: str = MISSING
    top_k: int = 5
    device: str = "auto"
    batch_size: int = 256


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    # Stored outside any group, so `--help` lists only the options users pick from.
    schemas = {
        "optimizer": {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig},
        "scheduler": {
            "none": NoSchedulerConfig,
            "cosine": CosineConfig,
            "onecycle": OneCycleConfig,
            "step": StepConfig,
        },
        "dataset": {
            "cifar10": Cifar10Config,
            "cifar100": Cifar100Config,
            "imagefolder": ImageFolderConfig,
            "synthetic": SyntheticConfig,
        },
        "augment": {"augment": AugmentConfig},
        "device": {"device": DeviceConfig},
        "trainer": {"trainer": TrainerConfig},
    }
    for group, nodes in schemas.items():
        for name, node in nodes.items():
            cs.store(name=f"{group}_{name}_schema", node=node)


DEVICE_TYPES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_ABSENT = object()

# (key, test, what the value must be). Keys missing from the chosen options are skipped.
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("trainer.epochs", lambda v: v >= 0, ">= 0"),
    ("trainer.batch_size", lambda v: v >= 1, ">= 1"),
    ("trainer.eval_batch_size", lambda v: v >= 1, ">= 1"),
    ("trainer.num_threads", lambda v: v >= 0, ">= 0 (0 = torch's default)"),
    ("trainer.log_every_n_steps", lambda v: v >= 1, ">= 1"),
    ("trainer.eval_every", lambda v: v >= 1, ">= 1"),
    ("trainer.checkpoint_every", lambda v: v >= 1, ">= 1 (epochs between checkpoints)"),
    ("trainer.histogram_every", lambda v: v >= 0, ">= 0 (epochs between histograms; 0 = off)"),
    ("trainer.limit_train_batches", lambda v: v is None or v >= 1, ">= 1 or null"),
    ("trainer.limit_eval_batches", lambda v: v is None or v >= 1, ">= 1 or null"),
    ("trainer.precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    (
        "trainer.compile_mode",
        lambda v: v in COMPILE_MODES,
        f"one of {', '.join(COMPILE_MODES)}",
    ),
    ("device.type", lambda v: v in DEVICE_TYPES, f"one of {', '.join(DEVICE_TYPES)}"),
    ("model.num_classes", lambda v: v is None or v >= 2, ">= 2"),
    ("optimizer.lr", lambda v: v > 0, "> 0"),
    ("optimizer.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optimizer.betas", lambda v: all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("scheduler.warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("scheduler.step_epochs", lambda v: v >= 1, ">= 1"),
    ("scheduler.gamma", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("scheduler.pct_start", lambda v: 0 < v < 1, "in (0, 1)"),
    ("scheduler.min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("dataset.train_size", lambda v: v >= 1, ">= 1"),
    ("dataset.test_size", lambda v: v >= 1, ">= 1"),
    ("dataset.image_size", lambda v: v >= 1, ">= 1"),
    ("dataset.noise", lambda v: v >= 0, ">= 0"),
    ("dataset.num_classes", lambda v: v is None or v >= 2, ">= 2 or null (follow the data)"),
    ("dataset.val_size", lambda v: v >= 0, ">= 0"),
    ("dataset.max_per_class", lambda v: v is None or v >= 1, ">= 1 or null"),
    ("dataset.num_workers", lambda v: v >= 0, ">= 0 (0 = decode in this process)"),
    ("augment.crop_padding", lambda v: v >= 0, ">= 0"),
    ("augment.mean", lambda v: v is None or len(v) == 3, "three numbers (RGB) or null"),
    (
        "augment.std",
        lambda v: v is None or (len(v) == 3 and min(v) > 0),
        "three numbers > 0 or null",
    ),
]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first value that cannot work."""
    for key, ok, expectation in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is _ABSENT:
            continue
        if not ok(value):
            shown = list(value) if isinstance(value, ListConfig) else repr(value)
            raise ConfigError(f"{key} must be {expectation}, got {shown}")
    if cfg.optimizer.get("nesterov") and cfg.optimizer.momentum == 0:
        raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0")
