"""Optimizers and per-step learning-rate schedules, built from their config groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cifar_exp.errors import ConfigError


def build_optimizer(
    options: dict[str, Any], params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    name = options["name"]
    lr, wd = options["lr"], options["weight_decay"]
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=tuple(options["betas"]), eps=options["eps"], weight_decay=wd
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, betas=tuple(options["betas"]), eps=options["eps"], weight_decay=wd
        )
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=options["momentum"],
            nesterov=options["nesterov"],
            weight_decay=wd,
        )
    raise ConfigError(f"unknown optimizer '{name}'; known: adam, adamw, sgd")


def _with_warmup(warmup_steps: int, after: Callable[[int], float]) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)

    return factor


def build_scheduler(
    options: dict[str, Any], optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
) -> LRScheduler:
    """A scheduler stepped once per optimizer step, whatever the option."""
    name = options["name"]
    total = max(1, epochs * steps_per_epoch)
    warmup = round(options.get("warmup_epochs", 0) * steps_per_epoch)
    if name == "none":
        return LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        floor = options["min_lr_ratio"]
        decay_steps = max(1, total - warmup)

        def cosine(step: int) -> float:
            progress = min(step, decay_steps) / decay_steps
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return LambdaLR(optimizer, _with_warmup(warmup, cosine))
    if name == "step":
        every = options["step_epochs"] * steps_per_epoch
        gamma = options["gamma"]
        return LambdaLR(optimizer, _with_warmup(warmup, lambda step: gamma ** (step // every)))
    if name == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total,
            pct_start=options["pct_start"],
            div_factor=options["div_factor"],
            final_div_factor=options["final_div_factor"],
        )
    raise ConfigError(f"unknown scheduler '{name}'; known: none, cosine, onecycle, step")
