"""Optimizers and per-step learning-rate schedules: each one options dataclass + a builder."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cifar_exp.errors import ConfigError
from cifar_exp.registry import Options, Registry, require

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
Params = Iterable[torch.nn.Parameter]


@dataclass
class OptimizerOptions(Options):
    lr: float = 1e-3
    weight_decay: float = 0.0

    def check(self) -> None:
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)


@dataclass
class AdamOptions(OptimizerOptions):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def check(self) -> None:
        super().check()
        ok = all(0 <= b < 1 for b in self.betas)
        require(ok, "betas", "two numbers in [0, 1)", self.betas)


@dataclass
class AdamWOptions(AdamOptions):
    weight_decay: float = 0.01


@dataclass
class SGDOptions(OptimizerOptions):
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False

    def check(self) -> None:
        super().check()
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov=true needs momentum > 0")


@dataclass
class RMSpropOptions(OptimizerOptions):
    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.alpha < 1, "alpha", "in [0, 1)", self.alpha)
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)


def torch_optimizer(kind: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """A builder that passes every option but the name to `kind`: the options' fields are
    its keyword arguments (lists as tuples, as torch's defaults are)."""

    def build(o: OptimizerOptions, params: Params) -> torch.optim.Optimizer:
        values = {f.name: getattr(o, f.name) for f in fields(o) if f.name != "name"}
        return kind(
            params, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        )

    return build


OPTIMIZERS.register("adam", AdamOptions)(torch_optimizer(torch.optim.Adam))
OPTIMIZERS.register("adamw", AdamWOptions)(torch_optimizer(torch.optim.AdamW))
OPTIMIZERS.register("sgd", SGDOptions)(torch_optimizer(torch.optim.SGD))
OPTIMIZERS.register("rmsprop", RMSpropOptions)(torch_optimizer(torch.optim.RMSprop))


@dataclass
class WarmupOptions(Options):
    warmup_epochs: float = 0.0

    def check(self) -> None:
        require(self.warmup_epochs >= 0, "warmup_epochs", ">= 0", self.warmup_epochs)


@dataclass
class CosineOptions(WarmupOptions):
    min_lr_ratio: float = 0.0

    def check(self) -> None:
        super().check()
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)


@dataclass
class StepOptions(Options):
    step_epochs: int = 30
    gamma: float = 0.1
    warmup_epochs: float = 0.0

    def check(self) -> None:
        require(self.step_epochs >= 1, "step_epochs", ">= 1", self.step_epochs)
        require(0 < self.gamma <= 1, "gamma", "in (0, 1]", self.gamma)
        require(self.warmup_epochs >= 0, "warmup_epochs", ">= 0", self.warmup_epochs)


@dataclass
class OneCycleOptions(Options):
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def check(self) -> None:
        require(0 < self.pct_start < 1, "pct_start", "in (0, 1)", self.pct_start)


def _with_warmup(warmup_steps: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)

    return factor


# Every scheduler is stepped once per optimizer step: builders get the run's step counts.
@SCHEDULERS.register("none", Options)
def constant(o: Options, opt: torch.optim.Optimizer, epochs: int, steps: int) -> LRScheduler:
    return LambdaLR(opt, lambda step: 1.0)


@SCHEDULERS.register("cosine", CosineOptions)
def cosine(o: CosineOptions, opt: torch.optim.Optimizer, epochs: int, steps: int) -> LRScheduler:
    warmup = round(o.warmup_epochs * steps)
    decay_steps = max(1, epochs * steps - warmup)

    def factor(step: int) -> float:
        progress = min(step, decay_steps) / decay_steps
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(opt, _with_warmup(warmup, factor))


@SCHEDULERS.register("step", StepOptions)
def step(o: StepOptions, opt: torch.optim.Optimizer, epochs: int, steps: int) -> LRScheduler:
    every = o.step_epochs * steps
    decay = _with_warmup(round(o.warmup_epochs * steps), lambda s: o.gamma ** (s // every))
    return LambdaLR(opt, decay)


@SCHEDULERS.register("onecycle", OneCycleOptions)
def onecycle(
    o: OneCycleOptions, opt: torch.optim.Optimizer, epochs: int, steps: int
) -> LRScheduler:
    return OneCycleLR(
        opt,
        max_lr=[group["lr"] for group in opt.param_groups],
        total_steps=max(1, epochs * steps),
        pct_start=o.pct_start,
        div_factor=o.div_factor,
        final_div_factor=o.final_div_factor,
    )
