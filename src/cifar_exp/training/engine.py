"""The training loop. A Trainer holds what a run trains with, built once from the config
(build.build_trainer); Trainer.fit() trains and evaluates epoch by epoch, and Trainer.step()
is the whole training step. evaluate() scores a split.

fit() can start from a saved Progress, writes checkpoints, and stops cleanly on a signal,
a non-finite loss or running out of memory (signals.py, guards.py)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifar_exp.components import calibration
from cifar_exp.components.averaging import WeightAverage
from cifar_exp.components.guards import NonFiniteWatch, deterministic_hint, out_of_memory
from cifar_exp.components.stop_rules import Stop, StopRule, first_stop
from cifar_exp.components.tta import tta_logits
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.datasets.subsets import classes_in
from cifar_exp.models.base import start_epoch
from cifar_exp.records.checkpoint import Checkpointer
from cifar_exp.records.commands import override, run_command
from cifar_exp.runtime.device import peak_memory_mb
from cifar_exp.runtime.distributed import all_reduce
from cifar_exp.runtime.progress import ProgressLine, duration
from cifar_exp.runtime.signals import SignalGate, signal_name
from cifar_exp.tracking import RunTracker
from cifar_exp.tracking.pictures import EvalDetails, Pictures
from cifar_exp.training.precision import Precision

if TYPE_CHECKING:
    from cifar_exp.config import TrainerConfig

log = logging.getLogger(__name__)


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
        self.stopped: dict[str, Any] | None = None  # a stop rule's Stop, once one fired
        self.new_epoch()

    def new_epoch(self) -> None:
        self.batch = 0
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.seen = 0
        self.window_loss = torch.zeros((), device=self.device)
        self.window_steps = 0
        # The window's total gradient norms (before clipping) and how many were finite (fp16
        # skips the steps whose gradients overflowed); the epoch's steps that clipped.
        self.window_grad_norm = torch.zeros((), device=self.device)
        self.window_norms = torch.zeros((), device=self.device)
        self.clipped = torch.zeros((), dtype=torch.int64, device=self.device)

    def count(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a step's batch to the epoch's sums (on the device: no synchronization).
        Soft targets (MixUp, CutMix) count as their dominant label."""
        self.batch += 1
        self.seen += len(labels)
        self.loss_sum += loss * len(labels)
        hard = labels if labels.ndim == 1 else labels.argmax(1)
        self.correct += (logits.argmax(1) == hard).sum()
        self.window_loss += loss
        self.window_steps += 1

    def count_gradients(
        self, norm: torch.Tensor, clipped: torch.Tensor | None, may_overflow: bool
    ) -> None:
        """Add a step's total gradient norm (and whether it clipped), on the device. Under
        fp16 (`may_overflow`) a norm that overflowed is left out: the scaler skips its step."""
        if may_overflow:
            finite = torch.isfinite(norm)
            norm = torch.where(finite, norm, 0.0)
        else:
            finite = True
        self.window_grad_norm.add_(norm)
        self.window_norms.add_(finite)
        if clipped is not None:
            self.clipped.add_(clipped)

    def epoch_sums(self, seconds: float, timed: int) -> dict[str, float]:
        """The epoch's training loss, accuracy and images/s over all processes (`timed`
        images in `seconds` here)."""
        sums = [self.loss_sum.double(), self.correct.double()]
        extra = sums[0].new_tensor([self.seen, timed])
        loss_sum, correct, seen, images = all_reduce(torch.stack([*sums, *extra])).tolist()
        return {
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "images_per_s": images / seconds if seconds > 0 else 0.0,
        }

    def end_epoch(self, epoch: int, best_acc: float | None) -> None:
        """`epoch` is complete (with a new best per-epoch accuracy, if given)."""
        if best_acc is not None:
            self.best_acc = best_acc
        self.epoch = epoch
        self.new_epoch()

    def where(self) -> str:
        if self.batch:
            return f"epoch {self.epoch + 1} batch {self.batch}, step {self.step}"
        return f"end of epoch {self.epoch}, step {self.step}"

    _TENSORS = ("loss_sum", "correct", "window_loss", "window_grad_norm", "window_norms", "clipped")
    _NUMBERS = ("epoch", "step", "batch", "best_acc", "seen", "window_steps", "stopped")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in self._NUMBERS}
        state.update({name: getattr(self, name).cpu() for name in self._TENSORS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._NUMBERS:
            setattr(self, name, state.get(name))  # `stopped`: absent from older checkpoints
        for name in self._TENSORS:
            if name in state:  # the gradient sums: absent from older checkpoints
                setattr(self, name, state[name].to(self.device))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: BatchLoader,
    precision: Precision | None = None,
    details: EvalDetails | None = None,
    tta: str = "none",
    progress_s: float = 0.0,
) -> dict[str, float]:
    """Mean cross-entropy, accuracy and the images scored over the loader's batches (of all
    processes; a stratified part of the split under trainer.limit_eval_batches), under
    test-time augmentation `tta` (see tta.py); fills `details` (confusion matrix, worst
    mistakes) for the pictures when given. `progress_s`: seconds between progress lines in
    the log (0: none)."""
    model.eval()
    # loss, correct, seen, then calibration.py's sums: one all_reduce for all of them
    totals = torch.zeros(3 + calibration.SIZE, dtype=torch.float64, device=loader.device)
    line = ProgressLine("evaluation: batch", len(loader), progress_s if loader.rank == 0 else 0)
    classes = 0
    for images, labels in loader:
        line.advance()
        with precision.autocast() if precision else contextlib.nullcontext():
            logits = tta_logits(model, images, tta)
        totals[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        totals[1] += (logits.argmax(1) == labels).sum()
        totals[2] += len(labels)
        totals[3:] += calibration.batch_sums(logits, labels)
        classes = logits.shape[1]
        if details is not None:
            details.update(images, logits, labels)
    if details is not None:
        details.reduce(loader.device)
    totals = all_reduce(totals)
    loss_sum, correct, seen = totals[:3].tolist()
    if details is not None:
        details.calibration = totals[3:].cpu()
    scored = {"loss": loss_sum / seen, "acc": correct / seen, "images": int(seen)}
    return scored | calibration.scores(totals[3:], seen, classes)


@dataclass
class Loaders:
    """This process's share of the splits. Per-epoch evaluation scores the validation split
    when one is held out (and the test split once, at the end), else the test split."""

    train: BatchLoader
    test: BatchLoader
    val: BatchLoader | None = None

    @property
    def per_epoch(self) -> tuple[str, BatchLoader]:
        return ("test", self.test) if self.val is None else ("val", self.val)


@dataclass
class Trainer:
    """What a run trains with, every part built before it (build.build_trainer); fit() runs it.

    `net` is the model itself (checkpoints hold its weights); `model` what trains it: `net`
    wrapped for several processes and compiled as asked. `settings` is the trainer config.
    `checkpointer` saves the parts a resume needs (this trainer's progress among them).
    `stop_rules` may end training after an epoch (stop_rules.py): the first that fires does.
    """

    net: nn.Module
    model: nn.Module
    loaders: Loaders
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    settings: TrainerConfig
    tracker: RunTracker
    progress: Progress
    checkpointer: Checkpointer | None = None
    pictures: Pictures | None = None
    average: WeightAverage | None = None
    init_s: float | None = None  # the data-dependent initialization's time, if one ran
    stop_rules: list[StopRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        device = self.loaders.train.device
        self.watch = NonFiniteWatch(device) if self.settings.stop_on_nonfinite else None
        self.signals: SignalGate | None = None  # the process's signal gate, during fit()
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] | None = None
        self.details: EvalDetails | None = None  # the last evaluation's, for the pictures
        self.params = [p for p in self.net.parameters() if p.requires_grad]  # for clipping
        # Read once: a config lookup every step costs more than the norm of a small model.
        clip = self.settings.grad_clip
        self.clip: tuple[float | None, float | None] = (clip.norm, clip.value)
        self.accumulate: int = self.settings.accumulate_grad_batches

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One optimizer step on one batch, in trainer.accumulate_grad_batches micro-batches;
        returns the (detached) batch loss and logits. `labels` are class indices, or soft
        targets [N, classes] under MixUp or CutMix."""
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.precision.scaler  # scales the loss under fp16; a no-op otherwise
        parts = micro_batches(images, labels, self.accumulate)
        losses, logits = [], []
        for i, (x, y) in enumerate(parts):
            with gradient_sync(self.model, last=i == len(parts) - 1):
                with self.precision.autocast():
                    out = self.model(x)
                    loss = F.cross_entropy(out, y, label_smoothing=self.settings.label_smoothing)
                # Weighted by its share of the batch: the parts' sum is the batch's mean loss.
                loss = loss * (len(y) / len(labels)) if len(parts) > 1 else loss
                scaler.scale(loss).backward()
            losses.append(loss.detach())
            logits.append(out.detach())
        scaler.unscale_(self.optimizer)  # clipping and the norm see the true gradients
        norm, clipped = clip_gradients(self.params, *self.clip)
        self.progress.count_gradients(norm, clipped, may_overflow=scaler.is_enabled())
        scaler.step(self.optimizer)  # under fp16: skipped when the gradients overflowed
        scaler.update()
        self.scheduler.step()
        self.progress.step += 1
        if self.average is not None:
            self.average.update(self.progress.step)
        if len(parts) == 1:
            return losses[0], logits[0]
        return sum(losses[1:], losses[0]), torch.cat(logits)

    def fit(self, signals: SignalGate | None = None) -> dict[str, float]:
        """Train from `progress` to settings.epochs, record the final metrics, return them.

        Writes checkpoints through `checkpointer`: last.pt every settings.checkpoint_every
        epochs and at the end, best.pt whenever the per-epoch accuracy improves, and last.pt
        mid-epoch when `signals` reports a signal (then raises Interrupted). A stop rule that
        fires ends training after that epoch (last.pt written) as if it were the last. However
        training ends, the tracker's HParams session records how."""
        self.signals = signals
        start = time.perf_counter()
        first = self.progress.epoch + 1
        with self.tracker.session(), deterministic_hint(self.loaders.train.device):
            if self.pictures is not None and first <= self.settings.epochs:
                self.loaders.train.set_epoch(first, start_batch=self.progress.batch)
                self.pictures.started(self.loaders.train, first_time=self.progress.step == 0)
            for epoch in range(first, self.settings.epochs + 1):
                if self.stopped is not None:  # a stop rule ended it (before a resume, too)
                    break
                self.epoch(epoch, time_first_step=self.settings.compile and epoch == first)
            final = self.final_metrics()
        final.update(epochs=self.progress.epoch, wall_s=time.perf_counter() - start)
        if self.stopped is not None:
            final.update(self.stopped.record())
        self.tracker.finish(final)
        return final

    def epoch(self, epoch: int, time_first_step: bool = False) -> None:
        """One epoch, from progress.batch on: train on the batches, evaluate, log, checkpoint.
        Runs on this process's share of the data; what it logs covers all processes."""
        p, loader, t = self.progress, self.loaders.train, self.settings
        loader.set_epoch(epoch, start_batch=p.batch)
        start_epoch(self.net, epoch)
        self.model.train()
        values: dict[str, float] = {}
        epoch_start = start = time.perf_counter()
        timed = 0  # images since the throughput clock started
        with self.out_of_memory_hint("training", loader):
            bar = self._progress_bar(epoch)
            beat = Heartbeat(t.log_interval_s if bar.disable else 0, epoch, t.epochs, loader)
            for images, labels in bar:
                loss, logits = self.step(images, labels)
                p.count(loss, logits, labels)
                if self.watch is not None:
                    self.watch.observe(loss, p.step)
                timed += len(labels)
                beat.batch_done(p.batch, len(labels))
                if time_first_step and "compile_s" not in values:
                    _synchronize(loader.device)
                    values["compile_s"] = time.perf_counter() - start
                    start, timed = time.perf_counter(), 0
                if p.step % t.log_every_n_steps == 0:
                    rate = timed / (time.perf_counter() - start)
                    bar.set_postfix(loss=f"{self.log_steps():.3f}", img_s=f"{rate:.0f}")
                if self.signals is not None and self.signals.requested and p.batch < len(loader):
                    break
            if self.watch is not None:
                self.watch.check(len(loader), self.kept())
            if p.batch < len(loader):
                self.interrupt()  # mid-epoch: last.pt continues from this batch
            _synchronize(loader.device)
            values.update(p.epoch_sums(time.perf_counter() - start, timed))
        if self.average is not None:
            self.average.epoch_done()
        values["train_s"] = time.perf_counter() - epoch_start
        if epoch == 1 and self.init_s is not None:
            values["init_s"] = self.init_s
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        if t.grad_clip.norm is not None or t.grad_clip.value is not None:
            values["grad_clipped_share"] = p.clipped.item() / p.batch
        split, eval_loader = self.loaders.per_epoch
        if epoch % t.eval_every == 0 or epoch == t.epochs:
            with self.out_of_memory_hint("evaluation", eval_loader):
                self.last_eval = self.score(split, eval_loader, epoch)
            values[f"{split}_loss"] = self.last_eval["loss"]
            values[f"{split}_acc"] = self.last_eval["acc"]
        values["epoch_s"] = time.perf_counter() - epoch_start
        peak = torch.tensor(peak_memory_mb(loader.device), dtype=torch.float64)
        values["peak_mem_mb"] = all_reduce(peak, op="max").item()

        self.end_epoch(epoch, values, split)

    def end_epoch(self, epoch: int, values: dict[str, float], split: str) -> None:
        """Record the epoch, ask the stop rules, checkpoint; stop here on a signal."""
        p, t = self.progress, self.settings
        improved = values.get(f"{split}_acc", -math.inf) > p.best_acc
        p.end_epoch(epoch, values.get(f"{split}_acc") if improved else None)
        self.last_train = values
        self.tracker.log_epoch(epoch, values, step=p.step)
        if self.pictures is not None:
            self.pictures.epoch_done(epoch)
        log.info("epoch %d/%d  %s", epoch, t.epochs, _epoch_line(values, split))
        # Every epoch counts, the last too: a resume may add epochs (trainer.epochs).
        stop = first_stop(self.stop_rules, epoch, values)
        if stop is not None and epoch < t.epochs:
            p.stopped = stop.state_dict()
            log.info("%s: training ends after epoch %d of %d", stop.reason, epoch, t.epochs)
        signalled = self.signals is not None and self.signals.requested
        if self.checkpointer is not None:
            ends = epoch == t.epochs or self.stopped is not None
            last = epoch % t.checkpoint_every == 0 or ends or signalled
            self.checkpointer.save(p.where(), last=last, best=improved)
        if signalled and epoch < t.epochs and self.stopped is None:
            self.interrupt(saved=self.checkpointer is not None)

    @property
    def stopped(self) -> Stop | None:
        """The stop rule's Stop that ended training, if one did."""
        return None if self.progress.stopped is None else Stop(**self.progress.stopped)

    def _progress_bar(self, epoch: int) -> tqdm:
        loader = self.loaders.train
        return tqdm(
            loader,
            desc=f"epoch {epoch}/{self.settings.epochs}",
            initial=self.progress.batch,
            total=len(loader),
            disable=not (self.settings.progress_bar and sys.stdout.isatty()) or loader.rank != 0,
            file=sys.stdout,
            leave=False,
        )

    def log_steps(self) -> float:
        """Log the mean loss of the steps since the last such line and return it (this is
        where the loop waits for the device)."""
        p, loader = self.progress, self.loaders.train
        if self.watch is not None:
            self.watch.check(len(loader), self.kept())
        # Shares are equal, so the mean of the processes' means is the batch's mean; the
        # gradient norms are the same on every process (their ratio is unchanged by the sum).
        sums = all_reduce(torch.stack([p.window_loss, p.window_grad_norm, p.window_norms]))
        loss_sum, norm_sum, norms = sums.tolist()
        mean_loss = loss_sum / p.window_steps / loader.world_size
        grad_norm = norm_sum / norms if norms else math.nan
        self.tracker.log_step(p.step, mean_loss, self.optimizer.param_groups[0]["lr"], grad_norm)
        for window in (p.window_loss, p.window_grad_norm, p.window_norms):
            window.zero_()
        p.window_steps = 0
        return mean_loss

    def score(self, split: str, loader: BatchLoader, epoch: int | None) -> dict[str, float]:
        """Score `split` with the weights evaluation uses (the average's when there is one);
        draws its confusion matrix for the Images tab at `epoch` (None: the end)."""
        model = self.model if self.average is None else self.average.model_to_evaluate(self.model)
        details = self.pictures.details() if self.pictures else None
        quiet = self.settings.progress_bar and sys.stdout.isatty()  # a bar shows the epoch
        every = 0.0 if quiet else self.settings.log_interval_s
        scores = evaluate(model, loader, self.precision, details, self.settings.tta, every)
        if self.pictures is not None and epoch is not None:
            self.pictures.evaluated(split, epoch, details)
        self.details = details
        return scores

    def final_metrics(self) -> dict[str, float]:
        split, loader = self.loaders.per_epoch
        if self.last_eval is None:  # nothing trained (epochs=0, or resumed at the end)
            self.last_eval = self.score(split, loader, None)
            self.progress.best_acc = self.last_eval["acc"]
        final = {
            f"{split}_acc": self.last_eval["acc"],
            f"{split}_loss": self.last_eval["loss"],
            f"best_{split}_acc": self.progress.best_acc,
            **_calibration(split, self.last_eval),
            **_part_scored(split, self.last_eval, loader),
        }
        if self.loaders.val is not None:
            test = self.score("test", self.loaders.test, None)
            final.update(test_acc=test["acc"], test_loss=test["loss"])
            final.update(_calibration("test", test))
            final.update(_part_scored("test", test, self.loaders.test))
        if self.pictures is not None:
            self.pictures.finished(self.progress.epoch, self.details)
        # The last epoch trained: this attempt's, or (a resume that only records the end)
        # the one its checkpoint's metrics hold.
        last = self.last_train or self.tracker.last_epoch()
        if "train_loss" in last:
            final.update(train_loss=last["train_loss"], train_acc=last["train_acc"])
        return final

    def kept(self) -> str:
        """What a stop keeps, for its message."""
        return self.checkpointer.describe() if self.checkpointer else "no checkpoints are written"

    @contextlib.contextmanager
    def out_of_memory_hint(self, phase: str, loader: BatchLoader) -> Iterator[None]:
        try:
            yield
        except torch.cuda.OutOfMemoryError as err:
            key = "trainer.batch_size" if phase == "training" else "trainer.eval_batch_size"
            raise out_of_memory(
                err, phase, key, loader.batch_size, loader.device, self.kept()
            ) from None

    def interrupt(self, saved: bool = False) -> NoReturn:
        """Save where training stands (unless the epoch's end just `saved` it) and raise
        Interrupted with how to continue."""
        assert self.signals is not None and self.signals.signum is not None
        p, name = self.progress, signal_name(self.signals.signum)
        if self.checkpointer is None:
            raise self.signals.interrupted(f"stopped by {name} at {p.where()}; no checkpoint")
        if not saved:
            self.checkpointer.save(p.where())
        resume = override("resume", self.checkpointer.folder.parent)
        raise self.signals.interrupted(
            f"stopped by {name} at {p.where()}; saved {self.checkpointer.last}. "
            f"Continue with: {run_command([resume])}"
        )


def micro_batches(
    images: torch.Tensor, labels: torch.Tensor, k: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batch in `k` parts of (nearly) equal size (an epoch's short last batch may split
    unevenly, or into fewer parts than k)."""
    if k == 1:
        return [(images, labels)]
    pairs = zip(images.tensor_split(k), labels.tensor_split(k), strict=True)
    return [(x, y) for x, y in pairs if len(y)]


def gradient_sync(model: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP's all-reduce of the gradients on the `last` micro-batch only (no_sync before it)."""
    ddp = getattr(model, "_orig_mod", model)  # under torch.compile, the module it compiled
    if last or not isinstance(ddp, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return ddp.no_sync()


def clip_gradients(
    parameters: list[nn.Parameter], max_norm: float | None, max_value: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clip the gradients to a total L2 norm of `max_norm` or elementwise to `max_value`
    (trainer.grad_clip; None: not that way); the total L2 norm before clipping and whether
    this step clipped (None when nothing clips), both on the device."""
    params = [p for p in parameters if p.grad is not None]
    if max_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm, norm > max_norm
    grads = [p.grad for p in params]
    norm = torch.nn.utils.get_total_norm(grads)
    if max_value is None:
        return norm, None
    clipped = torch.nn.utils.get_total_norm(grads, norm_type=math.inf) > max_value
    torch.nn.utils.clip_grad_value_(params, max_value)
    return norm, clipped


class Heartbeat:
    """Where a bar cannot show (a log file, a batch job), one log line every `interval`
    seconds: batch k of n, images/s, time elapsed in the epoch and its ETA. Reads the clock
    once per step and never waits for the device. `interval` 0, or another rank: silent."""

    def __init__(self, interval: float, epoch: int, epochs: int, loader: BatchLoader) -> None:
        self.interval = interval if loader.rank == 0 else 0
        self.epoch, self.epochs, self.total = epoch, epochs, len(loader)
        self.start = time.monotonic()
        self.next = self.start + self.interval
        self.first_batch: int | None = None  # of this attempt (a resume starts mid-epoch)
        self.images = 0

    def batch_done(self, batch: int, images: int) -> None:
        if not self.interval:
            return
        if self.first_batch is None:
            self.first_batch = batch - 1
        self.images += images
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.interval
        elapsed = now - self.start
        per_batch = elapsed / (batch - self.first_batch)
        log.info(
            "epoch %d/%d  batch %d/%d  %.0f img/s  elapsed %s  ETA %s",
            self.epoch,
            self.epochs,
            batch,
            self.total,
            self.images / elapsed,
            duration(elapsed),
            duration(per_batch * (self.total - batch)),
        )


def _calibration(split: str, scores: dict[str, float]) -> dict[str, float]:
    """The split's calibration and top-5 scores (calibration.py), as final metrics' keys."""
    keys = ("ece", "brier", "top5_acc")
    return {f"{split}_{key}": scores[key] for key in keys if key in scores}


def _part_scored(split: str, scores: dict[str, float], loader: BatchLoader) -> dict[str, int]:
    """How much of the split a limited evaluation scored (trainer.limit_eval_batches): its
    images and classes, and the whole split's; nothing when it scored all of it."""
    whole = loader.split.whole
    if whole is None:
        return {}
    return {
        f"{split}_images": scores["images"],
        f"{split}_images_total": whole.images,
        f"{split}_classes": classes_in(loader.split.labels),
        f"{split}_classes_total": whole.classes,
    }


def _epoch_line(values: dict[str, float], split: str) -> str:
    scored = f"{split}_acc" in values
    return "".join(
        [
            f"train loss {values['train_loss']:.4f} acc {values['train_acc']:.4f}  ",
            f"{split} loss {values[f'{split}_loss']:.4f} acc {values[f'{split}_acc']:.4f} "
            if scored
            else "",
            f"{values['images_per_s']:.0f} img/s  {values['epoch_s']:.1f}s  ",
            f"peak {values['peak_mem_mb']:.0f} MB",
            f"  compile {values['compile_s']:.1f}s" if "compile_s" in values else "",
        ]
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
