"""The training loop: fit() trains and evaluates epoch by epoch; evaluate() scores a split."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifar_exp.data import BatchLoader
from cifar_exp.distributed import all_reduce
from cifar_exp.performance import Precision, peak_memory_mb
from cifar_exp.tracking import RunTracker

log = logging.getLogger(__name__)


@dataclass
class FitOptions:
    epochs: int
    eval_every: int
    log_every_n_steps: int
    progress_bar: bool
    precision: Precision
    compiled: bool = False  # time the first step apart: torch.compile compiles there


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: BatchLoader, precision: Precision | None = None
) -> dict[str, float]:
    """Mean cross-entropy and accuracy over the loader's batches (of all processes)."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=loader.device)  # loss, correct, seen
    for images, labels in loader:
        with precision.autocast() if precision else contextlib.nullcontext():
            logits = model(images)
        totals[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        totals[1] += (logits.argmax(1) == labels).sum()
        totals[2] += len(labels)
    loss_sum, correct, seen = all_reduce(totals).tolist()
    return {"loss": loss_sum / seen, "acc": correct / seen}


def _show_progress(wanted: bool) -> bool:
    return wanted and sys.stdout.isatty()


def train_one_epoch(
    model: nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tracker: RunTracker,
    step: int,
    epoch: int,
    opts: FitOptions,
    time_first_step: bool = False,
) -> tuple[dict[str, float], int]:
    """One pass over this process's share of the data; metrics cover all processes."""
    model.train()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    window_loss = torch.zeros((), device=loader.device)
    window_steps = 0
    seen = timed = 0  # images trained on; images since the throughput clock started
    stats: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{opts.epochs}",
        disable=not _show_progress(opts.progress_bar) or loader.rank != 0,
        file=sys.stdout,
        leave=False,
    )
    for images, labels in bar:
        with opts.precision.autocast():
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        opts.precision.backward_and_step(loss, optimizer)
        scheduler.step()
        step += 1
        batch = len(labels)
        seen += batch
        timed += batch
        loss_sum += loss.detach() * batch
        correct += (logits.argmax(1) == labels).sum()
        window_loss += loss.detach()
        window_steps += 1
        if time_first_step and "compile_s" not in stats:
            _synchronize(loader.device)
            stats["compile_s"] = time.perf_counter() - start
            start, timed = time.perf_counter(), 0
        if step % opts.log_every_n_steps == 0:
            # Shares are equal, so the mean of the processes' means is the batch's mean.
            mean_loss = all_reduce(window_loss).item() / window_steps / loader.world_size
            tracker.log_step(step, mean_loss, optimizer.param_groups[0]["lr"])
            window_loss.zero_()
            window_steps = 0
            bar.set_postfix(
                loss=f"{mean_loss:.3f}", img_s=f"{timed / (time.perf_counter() - start):.0f}"
            )
    _synchronize(loader.device)
    elapsed = time.perf_counter() - start
    totals = torch.stack([loss_sum.double(), correct.double()])
    totals = all_reduce(torch.cat([totals, totals.new_tensor([seen, timed])])).tolist()
    stats.update(
        train_loss=totals[0] / totals[2],
        train_acc=totals[1] / totals[2],
        images_per_s=totals[3] / elapsed if elapsed > 0 else 0.0,
    )
    return stats, step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit(
    model: nn.Module,
    train_loader: BatchLoader,
    test_loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tracker: RunTracker,
    opts: FitOptions,
) -> dict[str, float]:
    """Train for opts.epochs; return the final and best test metrics."""
    step = 0
    best_acc = 0.0
    last_test: dict[str, float] | None = None
    last_train: dict[str, float] = {}
    for epoch in range(1, opts.epochs + 1):
        epoch_start = time.perf_counter()
        train_loader.set_epoch(epoch)
        last_train, step = train_one_epoch(
            model,
            train_loader,
            optimizer,
            scheduler,
            tracker,
            step,
            epoch,
            opts,
            time_first_step=opts.compiled and epoch == 1,
        )
        values = {**last_train, "lr": optimizer.param_groups[0]["lr"]}
        if epoch % opts.eval_every == 0 or epoch == opts.epochs:
            last_test = evaluate(model, test_loader, opts.precision)
            best_acc = max(best_acc, last_test["acc"])
            values.update(test_loss=last_test["loss"], test_acc=last_test["acc"])
        values["epoch_s"] = time.perf_counter() - epoch_start
        peak = torch.tensor(peak_memory_mb(train_loader.device), dtype=torch.float64)
        values["peak_mem_mb"] = all_reduce(peak, op="max").item()
        tracker.log_epoch(epoch, values)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.4f  %s %.0f img/s  %.1fs  peak %.0f MB%s",
            epoch,
            opts.epochs,
            values["train_loss"],
            values["train_acc"],
            f"test loss {values['test_loss']:.4f} acc {values['test_acc']:.4f} "
            if "test_acc" in values
            else "",
            values["images_per_s"],
            values["epoch_s"],
            values["peak_mem_mb"],
            f"  compile {values['compile_s']:.1f}s" if "compile_s" in values else "",
        )
    if last_test is None:  # epochs=0: score the untrained model
        last_test = evaluate(model, test_loader, opts.precision)
        best_acc = last_test["acc"]
    final = {
        "test_acc": last_test["acc"],
        "test_loss": last_test["loss"],
        "best_test_acc": best_acc,
    }
    if last_train:
        final.update(train_loss=last_train["train_loss"], train_acc=last_train["train_acc"])
    return final
