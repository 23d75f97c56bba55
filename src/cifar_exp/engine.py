"""The training loop: fit() trains and evaluates epoch by epoch; evaluate() scores a split."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifar_exp.data import BatchLoader
from cifar_exp.tracking import RunTracker

log = logging.getLogger(__name__)


@dataclass
class FitOptions:
    epochs: int
    eval_every: int
    log_every_n_steps: int
    progress_bar: bool


@torch.no_grad()
def evaluate(model: nn.Module, loader: BatchLoader) -> dict[str, float]:
    """Mean cross-entropy and accuracy over the loader's batches."""
    model.eval()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    seen = 0
    for images, labels in loader:
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return {"loss": loss_sum.item() / seen, "acc": correct.item() / seen}


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
) -> tuple[dict[str, float], int]:
    model.train()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    window_loss = torch.zeros((), device=loader.device)
    window_steps = 0
    seen = 0
    start = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{opts.epochs}",
        disable=not _show_progress(opts.progress_bar),
        file=sys.stdout,
        leave=False,
    )
    for images, labels in bar:
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        batch = len(labels)
        seen += batch
        loss_sum += loss.detach() * batch
        correct += (logits.argmax(1) == labels).sum()
        window_loss += loss.detach()
        window_steps += 1
        if step % opts.log_every_n_steps == 0:
            mean_loss = window_loss.item() / window_steps
            tracker.log_step(step, mean_loss, optimizer.param_groups[0]["lr"])
            window_loss.zero_()
            window_steps = 0
            bar.set_postfix(
                loss=f"{mean_loss:.3f}", img_s=f"{seen / (time.perf_counter() - start):.0f}"
            )
    if loader.device.type == "cuda":
        torch.cuda.synchronize(loader.device)
    elapsed = time.perf_counter() - start
    stats = {
        "train_loss": loss_sum.item() / seen,
        "train_acc": correct.item() / seen,
        "images_per_s": seen / elapsed,
    }
    return stats, step


def fit(
    model: nn.Module,
    train_loader: BatchLoader,
    test_loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    tracker: RunTracker,
    opts: FitOptions,
    val_loader: BatchLoader | None = None,
) -> dict[str, float]:
    """Train for opts.epochs; return the final metrics.

    Per-epoch evaluation uses the validation split when there is one (and the test split is
    scored once, at the end), else the test split.
    """
    split = "test" if val_loader is None else "val"
    eval_loader = test_loader if val_loader is None else val_loader
    step = 0
    best_acc = 0.0
    last_eval: dict[str, float] | None = None
    last_train: dict[str, float] = {}
    for epoch in range(1, opts.epochs + 1):
        epoch_start = time.perf_counter()
        train_loader.set_epoch(epoch)
        last_train, step = train_one_epoch(
            model, train_loader, optimizer, scheduler, tracker, step, epoch, opts
        )
        values = {**last_train, "lr": optimizer.param_groups[0]["lr"]}
        if epoch % opts.eval_every == 0 or epoch == opts.epochs:
            last_eval = evaluate(model, eval_loader)
            best_acc = max(best_acc, last_eval["acc"])
            values.update({f"{split}_loss": last_eval["loss"], f"{split}_acc": last_eval["acc"]})
        values["epoch_s"] = time.perf_counter() - epoch_start
        tracker.log_epoch(epoch, values)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.4f  %s %.0f img/s  %.1fs",
            epoch,
            opts.epochs,
            values["train_loss"],
            values["train_acc"],
            f"{split} loss {values[f'{split}_loss']:.4f} acc {values[f'{split}_acc']:.4f} "
            if f"{split}_acc" in values
            else "",
            values["images_per_s"],
            values["epoch_s"],
        )
    if last_eval is None:  # epochs=0: score the untrained model
        last_eval = evaluate(model, eval_loader)
        best_acc = last_eval["acc"]
    final = {f"{split}_acc": last_eval["acc"], f"{split}_loss": last_eval["loss"]}
    final[f"best_{split}_acc"] = best_acc
    if val_loader is not None:
        test = evaluate(model, test_loader)
        final.update(test_acc=test["acc"], test_loss=test["loss"])
    if last_train:
        final.update(train_loss=last_train["train_loss"], train_acc=last_train["train_acc"])
    return final
