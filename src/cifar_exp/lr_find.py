"""`python -m cifar_exp.lr_find <run overrides>`: Smith's learning-rate range test.

Builds the run these overrides describe (as `python -m cifar_exp.run` would: same model,
data, augmentation, optimizer, precision) and trains it with the run's own training step for
up to `lr_find.num_steps` steps while the learning rate grows exponentially from
`lr_find.start_lr` to `lr_find.end_lr` (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", section 3.3). The loss is smoothed by a debiased exponential moving
average and the test stops once the loss diverges: the smoothed loss, or one step's loss,
above `lr_find.diverge_factor` times the lowest smoothed loss (Lightning's
`early_stop_threshold` watches the smoothed loss alone, which lags behind a blow-up). The
suggested lr is where the smoothed loss falls fastest (the steepest descent, as Lightning's
LearningRateFinder suggests), looked for before the smoothed loss's lowest point only. It
writes `lr_find.json` and `lr_find.png` into its own output folder, prints the suggestion
and the command that trains with it; the weights it trained are thrown away and no run
folder is made or touched.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cifar_exp.config import LrFindOptions
from cifar_exp.errors import ConfigError, UserError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.records.atomic import write_json
from cifar_exp.records.commands import run_command
from cifar_exp.records.naming import override_key
from cifar_exp.registry import typed_options
from cifar_exp.runtime import distributed
from cifar_exp.runtime.progress import ProgressLine
from cifar_exp.training.build import build_trainer
from cifar_exp.training.engine import Trainer

log = logging.getLogger("cifar_exp")


def sweep_config(cfg: DictConfig, options: LrFindOptions) -> DictConfig:
    """The run's config for the range test: the optimizer at start_lr, no schedule (the
    test sets the lr), no averaged weights, nothing recorded but what it measures."""
    if cfg.get("resume"):
        raise ConfigError(
            f"resume={cfg.resume} continues a run; lr_find starts the run its overrides "
            "describe from scratch and touches no run folder: drop resume= and give that run's "
            "overrides (its .hydra/overrides.yaml lists them)"
        )
    if distributed.place().distributed:
        raise UserError("lr_find runs in one process; start it with python, not torchrun")
    # Unresolved: model.num_classes follows dataset.num_classes, which the data decides.
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("lr_find")
    plain["optimizer"]["lr"] = options.start_lr
    plain["scheduler"] = {"name": "none"}
    plain["trainer"].update(ema_decay=0.0, log_images=False, histogram_every=0, log_graph=False)
    return OmegaConf.create(plain)


def smoothed(losses: list[float], beta: float) -> list[float]:
    """The debiased exponential moving average of `losses` (weight `beta` on the past)."""
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def sweep(
    trainer: Trainer, options: LrFindOptions, log_interval_s: float = 30.0
) -> tuple[list[float], list[float], str]:
    """Train step by step with the lr growing by a constant factor per step; return the lr
    and the loss of every step taken and why it stopped: at num_steps, or where the loss
    diverged (the smoothed loss, or one step's loss, above diverge_factor times the lowest
    smoothed loss; or not finite). A progress line every `log_interval_s` seconds."""
    growth = (options.end_lr / options.start_lr) ** (1 / (options.num_steps - 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: growth**step)
    # A Trainer like the run's, stepping the test's schedule instead of the run's.
    finder = dataclasses.replace(trainer, scheduler=scheduler)
    loader, lrs, losses = finder.loaders.train, [], []
    best, epoch, average, beta = math.inf, 0, 0.0, options.smoothing
    line = ProgressLine("lr_find: step", options.num_steps, log_interval_s)
    finder.model.train()
    while True:
        epoch += 1
        loader.set_epoch(epoch)
        for images, labels in loader:
            lrs.append(finder.optimizer.param_groups[0]["lr"])
            losses.append(finder.step(images, labels)[0].item())
            # smoothed()'s last value, kept step by step
            average = beta * average + (1 - beta) * losses[-1]
            now = average / (1 - beta ** len(losses))
            limit = options.diverge_factor * best
            if not math.isfinite(losses[-1]) or now > limit or losses[-1] > limit:
                return lrs, losses, f"diverged at step {len(losses)} (lr {lrs[-1]:.3g})"
            best = min(best, now)
            if len(losses) == options.num_steps:
                return lrs, losses, f"reached lr_find.num_steps={options.num_steps}"
            line.advance(detail=f"lr {lrs[-1]:.3g}, smoothed loss {now:.4f}")


def suggestion(lrs: list[float], curve: list[float], skip_start: int) -> tuple[int, int]:
    """(the suggested step, the step of the lowest smoothed loss). The suggestion is where
    the smoothed loss falls fastest before its lowest point: past that point the loss has
    started to climb, and a larger lr only trains worse. The first `skip_start` points are
    left out (the average has not settled there)."""
    lowest = int(np.argmin(curve))
    lo = min(skip_start, max(lowest - 3, 0))
    if lowest - lo < 3:
        raise UserError(
            f"the smoothed loss was lowest at step {lowest} (lr {lrs[lowest]:.3g}) of "
            f"{len(curve)}, too soon to suggest an lr; lower lr_find.start_lr or "
            "lr_find.skip_start, or raise lr_find.num_steps"
        )
    # The gradient at the lowest point itself is one-sided: the steepest fall before it.
    return lo + int(np.gradient(np.array(curve[lo : lowest + 1]))[:-1].argmin()), lowest


def plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result["lr"], result["loss"], color="0.7", linewidth=1, label="loss of each step")
    ax.plot(result["lr"], result["smoothed_loss"], color="C0", linewidth=2, label="smoothed")
    lr = result["suggested_lr"]
    ax.axvline(lr, color="C3", linestyle="--", label=f"suggested lr {lr:.3g}")
    low_lr = result["lowest_loss_lr"]
    ax.axvline(low_lr, color="C2", linestyle=":", label=f"lowest smoothed loss, lr {low_lr:.3g}")
    if result["stopped"].startswith("diverged"):
        ax.axvline(result["lr"][-1], color="0.3", linestyle="-.", label="diverged")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    # From below the lowest loss to a little above where it started: the diverged steps'
    # losses would squash the curve that matters into a line.
    low = min(v for v in [*result["loss"], *result["smoothed_loss"]] if math.isfinite(v))
    start = result["smoothed_loss"][0]
    span = max(start - low, 1e-3 * abs(start), 1e-12)
    ax.set_ylim(low - 0.1 * span, start + 0.5 * span)
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def range_test(cfg: DictConfig, out_dir: Path, typed: list[str]) -> dict[str, Any]:
    """The range test of the run `cfg` describes; `typed`: the overrides given (the printed
    command repeats them, with the suggested optimizer.lr)."""
    options = typed_options("lr_find", LrFindOptions, cfg.lr_find)
    trainer, run_cfg = build_trainer(sweep_config(cfg, options), out_dir, record=False)
    lrs, losses, stopped = sweep(trainer, options, cfg.trainer.log_interval_s)
    curve = smoothed(losses, options.smoothing)
    best, lowest = suggestion(lrs, curve, options.skip_start)
    kept = [o for o in typed if not override_key(o).startswith(("lr_find.", "optimizer.lr"))]
    command = run_command([*kept, f"optimizer.lr={lrs[best]:.3g}"])
    result = {
        "model": run_cfg.model.name,
        "optimizer": run_cfg.optimizer.name,
        "options": dataclasses.asdict(options),
        "stopped": stopped,
        "steps": len(losses),
        "lr": lrs,
        "loss": losses,
        "smoothed_loss": curve,
        "suggested_step": best,
        "suggested_lr": lrs[best],
        "lowest_loss_step": lowest,
        "lowest_loss_lr": lrs[lowest],
        "command": command,
    }
    write_json(out_dir / "lr_find.json", result)
    title = f"lr range test: {run_cfg.model.name}, {run_cfg.optimizer.name}, {stopped}"
    plot(result, out_dir / "lr_find.png", title)
    log.info("%d steps, %s; wrote %s and lr_find.png", len(losses), stopped, out_dir)
    # The command's output, not a diagnostic.
    print(
        f"suggested lr {lrs[best]:.3g} (steepest descent of the smoothed loss before its lowest "
        f"point, step {best}; lowest at lr {lrs[lowest]:.3g}, step {lowest})"
    )
    print(f"train with: {command}")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="lr_find")
def main(cfg: DictConfig) -> None:
    typed = list(HydraConfig.get().overrides.task)
    in_output_dir(lambda cfg, out_dir: range_test(cfg, out_dir, typed), cfg)


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
