"""Shared by the benchmarks: where and when they ran (`provenance`), and for cpu.py, gpu.py
and augment.py one training step per variant, timed side by side.

Every variant trains its own copy of a model (same seed, Adam 1e-3 as in the seed post) with
the project's own Precision, use_channels_last and compile_model, on one fixed batch that is
already on the device, so only the step itself is timed. Rounds alternate the variants (in
reversed order every other round) and the medians and ratios are reported; `page_throughput`
shows them on docs/benchmarks.md.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import page
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from cifar_exp.models import MODELS, ModelOptions
from cifar_exp.runtime.device import compile_model, use_channels_last
from cifar_exp.training.engine import Progress, clip_gradients
from cifar_exp.training.precision import Precision

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Variant:
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    # The engine's per-step gradient bookkeeping: the total norm (engine.clip_gradients with
    # clipping off) added to the logging window on the device (Progress.count_gradients).
    grad_norm: bool = False

    @property
    def label(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compile")
        if self.grad_norm:
            parts.append("grad_norm")
        return "+".join(parts)


@dataclass
class TimedStep:
    """A model, its optimizer and its precision: one training step per `step()`, and the
    rates it was timed at. Not the engine's Trainer: no loader, schedule or bookkeeping."""

    variant: Variant
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    compile_s: float | None = None
    rates: list[float] = field(default_factory=list)
    progress: Progress | None = None  # where grad_norm variants add up the norms

    def __post_init__(self) -> None:
        if self.variant.grad_norm:
            self.progress = Progress(next(self.model.parameters()).device)
            self.params = list(self.model.parameters())

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        with self.precision.autocast():
            loss = F.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        scaler.scale(loss).backward()
        if self.progress is not None:
            scaler.unscale_(self.optimizer)
            norm, clipped = clip_gradients(self.params, None, None)
            self.progress.count_gradients(norm, clipped, may_overflow=scaler.is_enabled())
        scaler.step(self.optimizer)
        scaler.update()


def grad_norm_us(timed: TimedStep, calls: int = 200) -> float:
    """Microseconds of the gradient-norm bookkeeping alone (a grad_norm variant's, on the
    gradients of its last step): a figure the machine's load blurs less than a ratio of rates."""
    assert timed.progress is not None
    synchronize(timed.params[0].device)
    start = time.perf_counter()
    for _ in range(calls):
        norm, clipped = clip_gradients(timed.params, None, None)
        timed.progress.count_gradients(norm, clipped, may_overflow=False)
    synchronize(timed.params[0].device)
    return (time.perf_counter() - start) / calls * 1e6


def cpuinfo_field(name: str) -> str:
    """The first value of `name` in /proc/cpuinfo ("" where there is none, as off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    line = next((ln for ln in text.splitlines() if ln.split(":", 1)[0].strip() == name), "")
    return line.split(":", 1)[-1].strip()


def cpu_flags() -> set[str]:
    return set(cpuinfo_field("flags").split())


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def provenance(threads: int) -> dict:
    """Where and when a benchmark ran, for its JSON (docs/benchmarks.md shows it with each
    table): the command as typed, the date, the CPU model, cores and flags, threads, torch."""
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "flags": sorted(cpu_flags())},
        "threads": threads,
        "torch": torch.__version__,
    }


def run_config(overrides: list[str]) -> DictConfig:
    """The config that `python -m cifar_exp.run <overrides>` composes (Hydra, with the
    project's schemas and resolvers registered)."""
    from hydra import compose, initialize_config_dir

    from cifar_exp.hydra_setup import CONFIG_DIR, setup_hydra

    setup_hydra()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def seconds(action: Callable[[], object]) -> float:
    """Wall seconds of one call of `action`."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_seconds(action: Callable[[], object], repeats: int, warmup: int = 0) -> float:
    """Median seconds of `action()` over `repeats` calls, after `warmup` calls unclocked."""
    for _ in range(warmup):
        action()
    return statistics.median(seconds(action) for _ in range(repeats))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_options(spec: str) -> ModelOptions:
    """A model named as on the command line, `name` or `name:key=value:...` (e.g.
    `airbench:widths=[32,128,128]`), as checked options; ConfigError when they are bad."""
    name, *options = spec.split(":")
    return MODELS.options({"name": name, **OmegaConf.to_container(OmegaConf.from_dotlist(options))})


def build(spec: str, variant: Variant, device: torch.device, seed: int = 0) -> TimedStep:
    """The timed step of the model `spec` names (as `model_options` reads it) in `variant`."""
    torch.manual_seed(seed)
    model = MODELS.build(model_options(spec)).to(device)
    if variant.channels_last:
        model = use_channels_last(model)
    if variant.compile:
        model = compile_model(model, "default")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return TimedStep(variant, model, optimizer, Precision(variant.precision, device))


def random_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch_size,), generator=gen)
    return images.to(device).float().div_(255), labels.to(device)


def warm_up(timed: TimedStep, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
    """The first steps allocate, pick kernels and (with compile) compile: time them apart."""
    device = batch[0].device
    synchronize(device)
    start = time.perf_counter()
    timed.step(*batch)
    synchronize(device)
    if timed.variant.compile:
        timed.compile_s = time.perf_counter() - start
    for _ in range(steps - 1):
        timed.step(*batch)
    synchronize(device)


def time_rate(timed: TimedStep, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> float:
    """Images per second over `steps` training steps."""
    device = batch[0].device
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        timed.step(*batch)
    synchronize(device)
    return steps * len(batch[1]) / (time.perf_counter() - start)


def alternate(
    timed_steps: list[TimedStep],
    batch: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    rounds: int,
) -> None:
    """Time every variant's step once per round, reversing the order every other round."""
    for r in range(rounds):
        for timed in timed_steps if r % 2 == 0 else timed_steps[::-1]:
            timed.rates.append(time_rate(timed, batch, steps))
        log.info(
            "round %d/%d: %s",
            r + 1,
            rounds,
            ", ".join(f"{t.variant.label} {t.rates[-1]:.0f}" for t in timed_steps),
        )


def summary(model_name: str, timed_steps: list[TimedStep]) -> list[dict]:
    """One row per variant: median images/s, ratio to the first (the baseline), compile time."""
    base = statistics.median(timed_steps[0].rates)
    rows = []
    for t in timed_steps:
        median = statistics.median(t.rates)
        rows.append(
            {
                "model": model_name,
                "variant": t.variant.label,
                "images_per_s": round(median, 1),
                "min": round(min(t.rates), 1),
                "max": round(max(t.rates), 1),
                "ratio": round(median / base, 3),
                "compile_s": None if t.compile_s is None else round(t.compile_s, 1),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| model | variant | images/s (median) | min-max | vs fp32 | compile s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        compile_s = "" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['images_per_s']:.0f} | "
            f"{r['min']:.0f}-{r['max']:.0f} | {r['ratio']:.2f}x | {compile_s} |"
        )
    return "\n".join(lines)


def page_throughput(result: dict) -> str:
    """The body of cpu.py's and gpu.py's sections of docs/benchmarks.md: images/s per model
    and variant."""
    rows = result["rows"]
    has = {
        key: any(r.get(key) is not None for r in rows) for key in ("min", "compile_s", "peak_mb")
    }
    best = {}
    for r in rows:
        if r["model"] not in best or r["images_per_s"] > best[r["model"]]["images_per_s"]:
            best[r["model"]] = r
    head, align = ["model", "variant", "images/s", "vs fp32"], "llrr"
    for key, title in (("min", "min-max"), ("compile_s", "compile s"), ("peak_mb", "peak MiB")):
        if has[key]:
            head.append(title)
            align += "r"
    lines = []
    for r in rows:
        cells = [
            f"`{r['model']}`",
            r["variant"],
            page.number(r["images_per_s"]),
            f"{r['ratio']:.2f}x",
        ]
        if best[r["model"]] is r:
            cells[1:] = [f"**{c}**" for c in cells[1:]]
        if has["min"]:
            cells.append(
                "" if r["min"] is None else f"{page.number(r['min'])}-{page.number(r['max'])}"
            )
        if has["compile_s"]:
            cells.append("" if r["compile_s"] is None else f"{r['compile_s']:.1f}")
        if has["peak_mb"]:
            cells.append("" if r.get("peak_mb") is None else page.number(r["peak_mb"]))
        lines.append(cells)
    args = result["args"]
    setting = (
        f"Batch {args['batch_size']}, medians of "
        f"{page.count(args['rounds'], 'alternating round')} of {page.count(args['steps'], 'step')} "
        f"after {page.count(args['warmup'], 'warm-up step')}; bold: the fastest variant of each "
        "model."
    )
    fastest = "; ".join(
        f"`{model}`: {r['variant']}, {r['ratio']:.2f}x fp32" for model, r in best.items()
    )
    text = f"{setting}\n\n{page.table(head, align, lines)}\n\nFastest per model: {fastest}."
    for e in result.get("epochs", []):
        epochs = " / ".join(f"{s:.2f} s" for s in e["epoch_s"])
        text += (
            f"\n\n`{e['model']}`, {e['variant']}, batch {e['batch_size']}: an epoch of "
            f"{page.number(e['images'])} images held on the device took {epochs} (epoch 1 / 2), "
            f"{page.number(e['images_per_s'])} images/s in epoch 2."
        )
    if result.get("skipped"):
        text += f"\n\nSkipped (time budget): {', '.join(result['skipped'])}."
    return text
