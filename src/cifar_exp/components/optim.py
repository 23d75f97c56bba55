"""Optimizers and per-step learning-rate schedules: each one options dataclass + a builder.

Optimizer builders get the model itself (not just its parameters), so that the options common
to every optimizer can give normalization layers and biases their own lr and weight decay.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from cifar_exp.errors import ConfigError
from cifar_exp.registry import Options, Registry, option, require
from cifar_exp.runtime.device import auto_precision

log = logging.getLogger(__name__)
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
ParamGroups = list[dict[str, Any]]
NORM_LAYERS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


def evaluate_closure(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """An optimizer step's closure, called with gradients on (torch's optimizers do so)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


@dataclass
class OptimizerOptions(Options):
    """Base of every optimizer's options: lr, weight decay and their multipliers for the
    parameters of normalization layers and for biases, with their range checks."""

    lr: float = option(1e-3, compared=True)
    weight_decay: float = option(0.0, compared=True)
    # Multipliers of lr and weight_decay for the parameters of normalization layers, for the
    # other layers' biases (airbench gives BatchNorm biases lr x 64, weight decay / 64) and
    # for the output layer's weight.
    norm_lr_mult: float = 1.0
    norm_weight_decay_mult: float = 1.0
    bias_lr_mult: float = 1.0
    bias_weight_decay_mult: float = 1.0
    head_lr_mult: float = 1.0
    head_weight_decay_mult: float = 1.0

    def check(self) -> None:
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        for key in ("norm_lr_mult", "bias_lr_mult", "head_lr_mult"):
            require(getattr(self, key) > 0, key, "> 0", getattr(self, key))
        for key in ("norm_weight_decay_mult", "bias_weight_decay_mult", "head_weight_decay_mult"):
            require(getattr(self, key) >= 0, key, ">= 0", getattr(self, key))


# The base options that shape the parameter groups rather than being optimizer arguments.
GROUP_OPTIONS = {f.name for f in fields(OptimizerOptions)} - {"lr", "weight_decay"}


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
    momentum: float = option(0.9, compared=True)
    nesterov: bool = False
    decoupled_weight_decay: bool = False  # see DecoupledSGD

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
    momentum: float = option(0.0, compared=True)

    def check(self) -> None:
        super().check()
        require(0 <= self.alpha < 1, "alpha", "in [0, 1)", self.alpha)
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)


def parameter_kinds(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Each parameter of `model` once, in `model.parameters()` order, with its kind: "norm"
    (a normalization layer's), "bias" (another layer's bias), "head" (the weight of the last
    nn.Linear, the output layer) or "weight"."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, NORM_LAYERS):
                yield "norm", p
            elif name == "bias":
                yield "bias", p
            else:
                yield ("head" if module is head else "weight"), p


@runtime_checkable
class EarlyTrained(Protocol):
    """A model some of whose parameters train in its first epochs only (airbench's whitening
    bias): each such parameter with its number of epochs. The optimizer puts each in a group
    of its own (`train_epochs`), so a schedule can treat it apart (scheduler.early_decay)."""

    def early_parameters(self) -> list[tuple[nn.Parameter, int]]: ...


def early_epochs(model: nn.Module) -> dict[int, int]:
    """id(parameter) -> the epochs it trains, for the parameters `model` trains early only."""
    if not isinstance(model, EarlyTrained):
        return {}
    return {id(p): epochs for p, epochs in model.early_parameters()}


def param_groups(
    o: OptimizerOptions,
    params: list[tuple[str, nn.Parameter]],
    lr: float,
    early: dict[int, int] | None = None,
    weight_decay: float | None = None,
) -> ParamGroups:
    """One group per distinct (lr, weight decay) multiplier pair, the unscaled group first:
    with every multiplier at 1, one group of all `params`, as torch builds from a plain list.
    A parameter the model trains early only (`early`: id -> epochs, see early_epochs) gets a
    group of its own, which holds its epochs as `train_epochs`."""
    mults = {
        "norm": (o.norm_lr_mult, o.norm_weight_decay_mult),
        "bias": (o.bias_lr_mult, o.bias_weight_decay_mult),
        "head": (o.head_lr_mult, o.head_weight_decay_mult),
    }
    early = early or {}
    decay = o.weight_decay if weight_decay is None else weight_decay
    groups: dict[tuple[float, float, int], list[nn.Parameter]] = {(1.0, 1.0, 0): []}
    for kind, p in params:
        groups.setdefault((*mults.get(kind, (1.0, 1.0)), early.get(id(p), 0)), []).append(p)
    return [
        {"params": ps, "lr": lr * lr_mult, "weight_decay": decay * wd_mult}
        | ({"train_epochs": epochs} if epochs else {})
        for (lr_mult, wd_mult, epochs), ps in groups.items()
        if ps
    ]


def torch_optimizer(kind: type[torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """A builder that passes every option but the group-shaping ones to `kind`: the options'
    fields are its keyword arguments (lists as tuples, as torch's defaults are)."""

    def build(o: OptimizerOptions, model: nn.Module) -> torch.optim.Optimizer:
        values = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in GROUP_OPTIONS}
        return kind(
            param_groups(o, list(parameter_kinds(model)), o.lr, early_epochs(model)),
            **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()},
        )

    return build


OPTIMIZERS.register("adam", AdamOptions)(torch_optimizer(torch.optim.Adam))
OPTIMIZERS.register("adamw", AdamWOptions)(torch_optimizer(torch.optim.AdamW))
OPTIMIZERS.register("rmsprop", RMSpropOptions)(torch_optimizer(torch.optim.RMSprop))


class DecoupledSGD(torch.optim.SGD):
    """SGD whose weight decay is decoupled from the gradient, as AdamW's is: each step first
    shrinks every parameter that has a gradient, p <- p * (1 - lr * weight_decay) with its
    group's current (scheduled) lr, then takes torch's SGD step on the gradient alone, so the
    decay never enters the momentum buffer. Groups keep the decay as `decoupled_weight_decay`
    and a `weight_decay` of 0, which torch's step reads."""

    def __init__(self, params: ParamGroups, **options: Any) -> None:
        super().__init__(params, **options)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = group["weight_decay"]
            group["weight_decay"] = 0.0

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            keep = 1 - group["lr"] * group["decoupled_weight_decay"]
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(keep)
        super().step()
        return loss


@OPTIMIZERS.register("sgd", SGDOptions)
def sgd(o: SGDOptions, model: nn.Module) -> torch.optim.SGD:
    kind = DecoupledSGD if o.decoupled_weight_decay else torch.optim.SGD
    return kind(
        param_groups(o, list(parameter_kinds(model)), o.lr, early_epochs(model)),
        lr=o.lr,
        momentum=o.momentum,
        nesterov=o.nesterov,
        weight_decay=o.weight_decay,
    )


MUON_LR_ADJUSTMENTS = ("original", "match_rms_adamw", "spectral_unclamped")
MUON_REST = ("sgd", "adamw")
NS_PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class MuonOptions(OptimizerOptions):
    """torch.optim.Muon (lr, momentum, nesterov, ns_steps, adjust_lr_fn) for the hidden
    layers' weights; the rest (norms, biases, the output layer) goes to `rest`: Nesterov SGD
    with decoupled weight decay (momentum `rest_momentum`) or AdamW, at `rest_lr` times the
    norm/bias multipliers. weight_decay is decoupled in both: p <- p * (1 - lr * wd)."""

    lr: float = 0.02
    momentum: float = option(0.95, compared=True)
    nesterov: bool = True
    ns_steps: int = 5
    adjust_lr_fn: str = "original"
    rest: str = "adamw"
    rest_lr: float = 1e-3
    rest_momentum: float = 0.9
    # The rest's weight decay (null: weight_decay), and whether SGD's is decoupled (false:
    # torch's, added to the gradient, as airbench94_muon's SGD has it).
    rest_weight_decay: float | None = None
    rest_decoupled_weight_decay: bool = True
    # airbench94_muon: each weight rescaled to Frobenius norm sqrt(its output channels) just
    # before its update, so only the direction of a filter bank is learned.
    normalize_weights: bool = False
    # The Newton-Schulz iteration's precision: bf16 as torch's Muon has it, fp32, or auto (bf16
    # where the weights' device computes it natively, as trainer.precision=auto decides).
    ns_precision: str = "auto"

    def check(self) -> None:
        super().check()
        ok = self.ns_precision in NS_PRECISIONS
        require(ok, "ns_precision", f"one of {', '.join(NS_PRECISIONS)}", self.ns_precision)
        require(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        require(self.ns_steps >= 1, "ns_steps", ">= 1", self.ns_steps)
        adjustments = ", ".join(MUON_LR_ADJUSTMENTS)
        ok = self.adjust_lr_fn in MUON_LR_ADJUSTMENTS
        require(ok, "adjust_lr_fn", f"one of {adjustments}", self.adjust_lr_fn)
        require(self.rest in MUON_REST, "rest", f"one of {', '.join(MUON_REST)}", self.rest)
        require(self.rest_lr > 0, "rest_lr", "> 0", self.rest_lr)
        require(0 < self.rest_momentum < 1, "rest_momentum", "in (0, 1)", self.rest_momentum)
        decay = self.rest_weight_decay
        require(decay is None or decay >= 0, "rest_weight_decay", ">= 0 or null", decay)


def columns_in_memory_order(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` ([out, ...], shaped as `like`) with its trailing dims permuted into the memory
    order of `like`, so that flattening them is a view even for a channels_last conv weight.
    Muon's orthogonalization commutes with permuting columns: the order does not change it."""
    return t.permute(0, *sorted(range(1, like.ndim), key=lambda d: -like.stride(d)))


class MuonAndRest(torch.optim.Optimizer):
    """torch.optim.Muon over 2-D stand-ins of the hidden weights (which share their memory)
    plus another optimizer over the rest, as one optimizer: `param_groups` lists Muon's
    groups then the rest's (schedulers set each group's lr), and the state dict holds both.

    torch's Muon accepts only 2-D parameters: each weight gets a matrix view, and a hook
    points the view's gradient at the weight's after every backward pass (so a GradScaler
    unscales the gradients Muon reads). Build it after the model is on its device and layout.
    """

    def __init__(self, weights: list[nn.Parameter], o: MuonOptions, rest: ParamGroups) -> None:
        # `view`, not `reshape`: Muon's in-place updates must land in the weights themselves.
        matrices = [
            nn.Parameter(columns_in_memory_order(w.detach(), w).view(len(w), -1)) for w in weights
        ]
        for weight, matrix in zip(weights, matrices, strict=True):
            weight.register_post_accumulate_grad_hook(_point_grad(matrix))
        self.weights = weights
        self.normalize_weights = o.normalize_weights
        self.muon = Muon(
            matrices,
            ns_dtype=newton_schulz_dtype(o.ns_precision, weights),
            lr=o.lr,
            weight_decay=o.weight_decay,
            momentum=o.momentum,
            nesterov=o.nesterov,
            ns_steps=o.ns_steps,
            adjust_lr_fn=o.adjust_lr_fn,
        )
        if o.rest == "sgd":
            sgd = DecoupledSGD if o.rest_decoupled_weight_decay else torch.optim.SGD
            self.rest = sgd(rest, lr=o.rest_lr, momentum=o.rest_momentum, nesterov=True)
        else:
            self.rest = torch.optim.AdamW(rest, lr=o.rest_lr)
        # The base class keeps the very group dicts of both, so an lr set here reaches them.
        super().__init__(self.muon.param_groups + self.rest.param_groups, {})

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = evaluate_closure(closure)
        if self.normalize_weights:
            with torch.no_grad():
                for weight in self.weights:
                    if weight.grad is not None:
                        weight.mul_(len(weight) ** 0.5 / weight.norm())
        self.muon.step()
        self.rest.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        # The weights' own gradients too: Muon only sees (and clears) their views.
        for weight in self.weights:
            if set_to_none:
                weight.grad = None
            elif weight.grad is not None:
                weight.grad.zero_()
        self.muon.zero_grad(set_to_none)
        self.rest.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "rest": self.rest.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.rest.load_state_dict(state_dict["rest"])
        self.param_groups = self.muon.param_groups + self.rest.param_groups


def newton_schulz_dtype(ns_precision: str, weights: list[nn.Parameter]) -> torch.dtype:
    """optimizer.ns_precision as a dtype; auto asks the weights' device, as
    trainer.precision=auto does, and logs the answer."""
    if ns_precision == "auto" and weights:
        ns_precision, why = auto_precision(weights[0].device)
        log.info("Muon's Newton-Schulz in %s: %s", ns_precision, why)
    return torch.bfloat16 if ns_precision == "bf16" else torch.float32


def muon_lr_ratio(adjust_lr_fn: str | None, rows: int, columns: int) -> float:
    """How torch's Muon scales a [rows, columns] matrix's lr (adjust_lr_fn, None: original)."""
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, columns))
    if adjust_lr_fn == "spectral_unclamped":
        return math.sqrt(rows / columns)
    return math.sqrt(max(1, rows / columns))


def newton_schulz(
    g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalization of `g` (2-D), in g's dtype: the
    iteration of torch.optim.Muon, which always computes it in bf16."""
    a, b, c = coefficients
    tall = g.size(0) > g.size(1)
    x = g.T if tall else g
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon (the same update, groups and state dict) with its Newton-Schulz
    iteration in `ns_dtype`: torch's bf16 is emulated on a CPU without native bf16, where
    speedrun94_muon's optimizer step took 282 ms in bf16 and 21 ms in fp32 (2-core EPYC,
    scripts/bench/layers.py; docs/benchmarks: "Where a step's time goes")."""

    def __init__(self, params: list[nn.Parameter], ns_dtype: torch.dtype, **options: Any):
        super().__init__(params, **options)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in (p for p in group["params"] if p.grad is not None):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(
                    update.to(self.ns_dtype),
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                )
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * muon_lr_ratio(group["adjust_lr_fn"], *p.shape))
        return loss


def _point_grad(matrix: nn.Parameter) -> Callable[[torch.Tensor], None]:
    def hook(weight: torch.Tensor) -> None:
        matrix.grad = columns_in_memory_order(weight.grad, weight).reshape(len(weight), -1)

    return hook


@OPTIMIZERS.register("muon", MuonOptions)
def muon(o: MuonOptions, model: nn.Module) -> MuonAndRest:
    weights, rest = [], []
    for kind, p in parameter_kinds(model):
        if kind == "weight" and p.ndim >= 2 and p.requires_grad:
            weights.append(p)
        else:
            rest.append((kind, p))
    groups = param_groups(o, rest, o.rest_lr, early_epochs(model), o.rest_weight_decay)
    return MuonAndRest(weights, o, groups)


@dataclass
class WarmupOptions(Options):
    """A schedule's linear warmup: `warmup_epochs` (fractions allowed), or `warmup_ratio` of
    all the run's steps (int(ratio * steps), airbench's triangle peaks at 0.23); from
    `start_ratio` of the lr at the first step (airbench: 0.2) up to the lr."""

    warmup_epochs: float = 0.0
    warmup_ratio: float = 0.0
    # 0: the first step's lr is 1/warmup steps of the peak (a step at lr 0 would be wasted).
    start_ratio: float = 0.0

    def check(self) -> None:
        require(self.warmup_epochs >= 0, "warmup_epochs", ">= 0", self.warmup_epochs)
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "in [0, 1)", self.warmup_ratio)
        require(0 <= self.start_ratio <= 1, "start_ratio", "in [0, 1]", self.start_ratio)
        if self.warmup_epochs and self.warmup_ratio:
            raise ConfigError(
                f"scheduler.warmup_epochs={self.warmup_epochs} and scheduler.warmup_ratio="
                f"{self.warmup_ratio} both set the warmup; set one of them to 0"
            )

    def warmup_steps(self, total_steps: int, steps_per_epoch: int) -> int:
        if self.warmup_ratio:
            return int(self.warmup_ratio * total_steps)  # airbench's int(peak * steps)
        return round(self.warmup_epochs * steps_per_epoch)


@dataclass
class DecayOptions(WarmupOptions):
    """A warmup, then a decay to `lr * min_lr_ratio` at the last step (cosine, linear)."""

    min_lr_ratio: float = 0.0
    # The parameters a model trains in its first epochs only (airbench's whitening bias):
    # false: the run's schedule; true: their lr falls linearly to 0 over those epochs
    # (airbench94_muon).
    early_decay: bool = False

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


def _with_warmup(
    warmup_steps: int, after: Callable[[int], float], start: float = 0.0
) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            if start:  # airbench's triangle: start at step 0, the peak at warmup_steps
                return start + (1 - start) * step / warmup_steps
            return (step + 1) / warmup_steps
        return after(step - warmup_steps)

    return factor


# Every scheduler is stepped once per optimizer step. Builders get the run's total steps
# (build.py plans them once: a fractional last epoch makes them fewer than epochs x steps)
# and the steps of a full epoch.
@SCHEDULERS.register("none", Options)
def constant(o: Options, opt: torch.optim.Optimizer, total: int, steps: int) -> LRScheduler:
    return LambdaLR(opt, lambda step: 1.0)


def _warmup_then_decay(
    o: DecayOptions,
    opt: torch.optim.Optimizer,
    total: int,
    steps: int,
    shape: Callable[[float], float],
) -> LRScheduler:
    """Linear warmup (see WarmupOptions), then from lr down to lr * min_lr_ratio at the
    last step, following `shape` (1 at progress 0, 0 at progress 1)."""
    warmup = o.warmup_steps(total, steps)
    decay_steps = max(1, total - warmup)

    def factor(step: int) -> float:
        progress = min(step, decay_steps) / decay_steps
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * shape(progress)

    run = _with_warmup(warmup, factor, o.start_ratio)
    if not o.early_decay:
        return LambdaLR(opt, run)
    early = [group.get("train_epochs", 0) for group in opt.param_groups]
    if not any(early):
        raise ConfigError(
            "scheduler.early_decay=true: the model trains no parameter in its first epochs "
            "only (e.g. model=airbench with model.whiten_bias_epochs > 0); set it to false"
        )
    return LambdaLR(opt, [_to_zero(math.ceil(e * steps)) if e else run for e in early])


def _to_zero(steps: int) -> Callable[[int], float]:
    """1 at step 0, down to 0 at `steps` in a straight line, 0 after."""
    return lambda step: max(0.0, 1 - step / steps)


@SCHEDULERS.register("cosine", DecayOptions)
def cosine(o: DecayOptions, opt: torch.optim.Optimizer, total: int, steps: int) -> LRScheduler:
    return _warmup_then_decay(o, opt, total, steps, lambda x: 0.5 * (1 + math.cos(math.pi * x)))


# airbench94's schedule: a linear warmup, then a linear decay (to 0 with min_lr_ratio=0);
# with start_ratio=0.2, warmup_ratio=0.23, min_lr_ratio=0.07 its triangle, step for step.
@SCHEDULERS.register("linear", DecayOptions)
def linear(o: DecayOptions, opt: torch.optim.Optimizer, total: int, steps: int) -> LRScheduler:
    return _warmup_then_decay(o, opt, total, steps, lambda x: 1 - x)


@SCHEDULERS.register("step", StepOptions)
def step(o: StepOptions, opt: torch.optim.Optimizer, total: int, steps: int) -> LRScheduler:
    every = o.step_epochs * steps
    decay = _with_warmup(round(o.warmup_epochs * steps), lambda s: o.gamma ** (s // every))
    return LambdaLR(opt, decay)


@SCHEDULERS.register("onecycle", OneCycleOptions)
def onecycle(o: OneCycleOptions, opt: torch.optim.Optimizer, total: int, steps: int) -> LRScheduler:
    return OneCycleLR(
        opt,
        max_lr=[group["lr"] for group in opt.param_groups],
        total_steps=max(1, total),
        pct_start=o.pct_start,
        div_factor=o.div_factor,
        final_div_factor=o.final_div_factor,
    )
