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


@dataclass
class Cifar10Config:
    name: str = "cifar10"
    root: str = "data"
    download: bool = True
    num_classes: int = 10


@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    num_classes: int = 10
    train_size: int = 2000
    test_size: int = 500
    image_size: int = 32
    noise: float = 48.0
    seed: int = 0


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


@dataclass
class Config:
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    dataset: Any = MISSING
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # A run directory or checkpoint to continue (see run.py); relative to the launch folder.
    resume: str | None = None


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
        "dataset": {"cifar10": Cifar10Config, "synthetic": SyntheticConfig},
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
    ("trainer.limit_train_batches", lambda v: v is None or v >= 1, ">= 1 or null"),
    ("trainer.limit_eval_batches", lambda v: v is None or v >= 1, ">= 1 or null"),
    ("trainer.precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    (
        "trainer.compile_mode",
        lambda v: v in COMPILE_MODES,
        f"one of {', '.join(COMPILE_MODES)}",
    ),
    ("device.type", lambda v: v in DEVICE_TYPES, f"one of {', '.join(DEVICE_TYPES)}"),
    ("model.num_classes", lambda v: v >= 2, ">= 2"),
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
