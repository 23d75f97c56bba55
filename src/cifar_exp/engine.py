"""The training loop: fit() trains and evaluates epoch by epoch; evaluate() scores a split.

fit() can start from a saved Progress, writes checkpoints, and stops cleanly on a signal,
a non-finite loss or running out of memory (see stopping.py)."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifar_exp.checkpoint import Checkpointer
from cifar_exp.data import BatchLoader
from cifar_exp.distributed import all_reduce
from cifar_exp.figures import EvalDetails, Pictures
from cifar_exp.performance import Precision, peak_memory_mb
from cifar_exp.stopping import (
    Interrupted,
    NonFiniteWatch,
    StopOnSignal,
    out_of_memory,
)
from cifar_exp.tracking import RunTracker
from cifar_exp.tta import tta_logits

log = logging.getLogger(__name__)


@dataclass
class FitOptions:
    epochs: int
    eval_every: int
    log_every_n_steps: int
    progress_bar: bool
    precision: Precision
    compiled: bool = False  # time the first step apart: torch.compile compiles there
    checkpoint_every: int = 1
    stop_on_nonfinite: bool = True


class Progress:
    """Where training stands. With the model, optimizer and scheduler states it is all a
    checkpoint needs to continue exactly, also from the middle of an epoch."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps taken
        self.batch = 0  # batches done in the unfinished epoch (0 at an epoch boundary)
        # Best accuracy of the per-epoch evaluation (val split, else test): selects best.pt.
        self.best_acc = -math.inf
        self.new_epoch()

    def new_epoch(self) -> None:
        self.batch = 0
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.seen = 0
        self.window_loss = torch.zeros((), device=self.device)
        self.window_steps = 0

    def where(self) -> str:
        if self.batch:
            return f"epoch {self.epoch + 1} batch {self.batch}, step {self.step}"
        return f"end of epoch {self.epoch}, step {self.step}"

    _TENSORS = ("loss_sum", "correct", "window_loss")
    _NUMBERS = ("epoch", "step", "batch", "best_acc", "seen", "window_steps")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in self._NUMBERS}
        state.update({name: getattr(self, name).cpu() for name in self._TENSORS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._NUMBERS:
            setattr(self, name, state[name])
        for name in self._TENSORS:
            setattr(self, name, state[name].to(self.device))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    precision: Precision | None = None,
    details: EvalDetails | None = None,
    tta: str = "none",
) -> dict[str, float]:
    """Mean cross-entropy and accuracy over the loader's batches (of all processes), under
    test-time augmentation `tta` (see tta.py); fills `details` (confusion matrix, worst
    mistakes) for the pictures when given."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=loader.device)  # loss, correct, seen
    for images, labels in loader:
        with precision.autocast() if precision else contextlib.nullcontext():
            logits = tta_logits(model, images, tta)
        totals[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        totals[1] += (logits.argmax(1) == labels).sum()
        totals[2] += len(labels)
        if details is not None:
            details.update(images, logits, labels)
    if details is not None:
        details.reduce(loader.device)
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
    progress: Progress,
    opts: FitOptions,
    watch: NonFiniteWatch | None = None,
    stop: StopOnSignal | None = None,
    kept: Callable[[], str] = lambda: "no checkpoint was written yet",
    time_first_step: bool = False,
) -> dict[str, float] | None:
    """Train from progress.batch to the end of the epoch; None if a stop was requested first.

    Runs on this process's share of the data; the metrics it returns cover all processes."""
    model.train()
    p = progress
    epoch = p.epoch + 1
    timed = 0  # images since the throughput clock started
    stats: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{opts.epochs}",
        initial=p.batch,
        total=len(loader),
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
        p.step += 1
        p.batch += 1
        if watch is not None:
            watch.observe(loss, p.step)
        batch = len(labels)
        p.seen += batch
        timed += batch
        p.loss_sum += loss.detach() * batch
        p.correct += (logits.argmax(1) == labels).sum()
        p.window_loss += loss.detach()
        p.window_steps += 1
        if time_first_step and "compile_s" not in stats:
            _synchronize(loader.device)
            stats["compile_s"] = time.perf_counter() - start
            start, timed = time.perf_counter(), 0
        if p.step % opts.log_every_n_steps == 0:
            if watch is not None:
                watch.check(len(loader), kept())
            # Shares are equal, so the mean of the processes' means is the batch's mean.
            mean_loss = all_reduce(p.window_loss).item() / p.window_steps / loader.world_size
            tracker.log_step(p.step, mean_loss, optimizer.param_groups[0]["lr"])
            p.window_loss.zero_()
            p.window_steps = 0
            bar.set_postfix(
                loss=f"{mean_loss:.3f}",
                img_s=f"{timed / (time.perf_counter() - start):.0f}",
            )
        if stop is not None and stop.requested and p.batch < len(loader):
            break
    if watch is not None:
        watch.check(len(loader), kept())
    if p.batch < len(loader):
        return None
    _synchronize(loader.device)
    elapsed = time.perf_counter() - start
    sums = [p.loss_sum.double(), p.correct.double()]
    totals = all_reduce(torch.stack([*sums, *sums[0].new_tensor([p.seen, timed])])).tolist()
    stats.update(
        train_loss=totals[0] / totals[2],
        train_acc=totals[1] / totals[2],
        images_per_s=totals[3] / elapsed if elapsed > 0 else 0.0,
    )
    return stats


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
    progress: Progress | None = None,
    checkpointer: Checkpointer | None = None,
    stop: StopOnSignal | None = None,
    val_loader: BatchLoader | None = None,
    pictures: Pictures | None = None,
) -> dict[str, float]:
    """Train from `progress` (default: the start) to opts.epochs; return the final metrics.

    Per-epoch evaluation uses the validation split when there is one (and the test split is
    scored once, at the end), else the test split; its accuracy also selects best.pt.
    Writes checkpoints through `checkpointer`: last.pt every opts.checkpoint_every epochs and
    at the end, best.pt whenever the selection metric improves, and last.pt mid-epoch when
    `stop` reports a signal (then raises Interrupted). `pictures` draws the Images tab.
    """
    progress = progress or Progress(train_loader.device)
    watch = NonFiniteWatch(train_loader.device) if opts.stop_on_nonfinite else None
    split = "test" if val_loader is None else "val"
    eval_loader = test_loader if val_loader is None else val_loader

    def kept() -> str:
        return checkpointer.describe() if checkpointer else "no checkpoints are written"

    last_eval: dict[str, float] | None = None
    last_train: dict[str, float] = {}
    first_epoch = progress.epoch + 1
    details = None
    if pictures is not None and first_epoch <= opts.epochs:
        train_loader.set_epoch(first_epoch, start_batch=progress.batch)
        pictures.started(train_loader, first_time=progress.step == 0)
    for epoch in range(first_epoch, opts.epochs + 1):
        epoch_start = time.perf_counter()
        train_loader.set_epoch(epoch, start_batch=progress.batch)
        phase, loader = "training", train_loader
        try:
            stats = train_one_epoch(
                model,
                train_loader,
                optimizer,
                scheduler,
                tracker,
                progress,
                opts,
                watch,
                stop,
                kept,
                time_first_step=opts.compiled and epoch == first_epoch,
            )
            if stats is None:
                _stop(progress, checkpointer, stop)
            last_train = stats
            values = {**last_train, "lr": optimizer.param_groups[0]["lr"]}
            if epoch % opts.eval_every == 0 or epoch == opts.epochs:
                phase, loader = "evaluation", eval_loader
                details = pictures.details() if pictures else None
                last_eval = evaluate(model, eval_loader, opts.precision, details)
                if pictures is not None:
                    pictures.evaluated(split, epoch, details)
                values[f"{split}_loss"], values[f"{split}_acc"] = (
                    last_eval["loss"],
                    last_eval["acc"],
                )
        except torch.cuda.OutOfMemoryError as err:
            key = "trainer.batch_size" if phase == "training" else "trainer.eval_batch_size"
            raise out_of_memory(err, phase, key, loader.batch_size, loader.device, kept()) from None
        values["epoch_s"] = time.perf_counter() - epoch_start
        peak = torch.tensor(peak_memory_mb(train_loader.device), dtype=torch.float64)
        values["peak_mem_mb"] = all_reduce(peak, op="max").item()
        improved = f"{split}_acc" in values and values[f"{split}_acc"] > progress.best_acc
        if improved:
            progress.best_acc = values[f"{split}_acc"]
        progress.epoch = epoch
        progress.new_epoch()
        tracker.log_epoch(epoch, values)
        if pictures is not None:
            pictures.epoch_done(epoch)
        log.info(
            "epoch %d/%d  train loss %.4f acc %.4f  %s %.0f img/s  %.1fs  peak %.0f MB%s",
            epoch,
            opts.epochs,
            values["train_loss"],
            values["train_acc"],
            f"{split} loss {values[f'{split}_loss']:.4f} acc {values[f'{split}_acc']:.4f} "
            if f"{split}_acc" in values
            else "",
            values["images_per_s"],
            values["epoch_s"],
            values["peak_mem_mb"],
            f"  compile {values['compile_s']:.1f}s" if "compile_s" in values else "",
        )
        if checkpointer is not None:
            periodic = epoch % opts.checkpoint_every == 0 or epoch == opts.epochs
            checkpointer.save(
                progress.where(), last=periodic or bool(stop and stop.requested), best=improved
            )
        if stop is not None and stop.requested and epoch < opts.epochs:
            _stop(progress, checkpointer, stop)
    if last_eval is None:  # epochs=0: score the untrained model
        details = pictures.details() if pictures else None
        last_eval = evaluate(model, eval_loader, opts.precision, details)
        progress.best_acc = last_eval["acc"]
    final = {
        f"{split}_acc": last_eval["acc"],
        f"{split}_loss": last_eval["loss"],
        f"best_{split}_acc": progress.best_acc,
    }
    if val_loader is not None:
        details = pictures.details() if pictures else None
        test = evaluate(model, test_loader, opts.precision, details)
        final.update(test_acc=test["acc"], test_loss=test["loss"])
    if pictures is not None:
        pictures.finished(opts.epochs, details)
    if last_train:
        final.update(train_loss=last_train["train_loss"], train_acc=last_train["train_acc"])
    return final


def _stop(progress: Progress, checkpointer: Checkpointer | None, stop: StopOnSignal) -> NoReturn:
    assert stop.signum is not None
    name = signal.Signals(stop.signum).name
    if checkpointer is None:
        raise Interrupted(stop.signum, f"stopped by {name} at {progress.where()}; no checkpoint")
    checkpointer.save(progress.where())
    run_dir = checkpointer.folder.parent
    raise Interrupted(
        stop.signum,
        f"stopped by {name} at {progress.where()}; saved {checkpointer.last}. "
        f"Continue with: python -m cifar_exp.run resume={run_dir}",
    )
