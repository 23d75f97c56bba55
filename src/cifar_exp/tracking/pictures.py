"""The run's pictures in TensorBoard: what the model sees, what it confuses, where it fails.

`EvalDetails` gathers, during an evaluation, the confusion matrix and the most confidently
misclassified images (summed / gathered over all processes under torchrun). `Pictures`
turns them into Images-tab entries with the tracker's writer (rank 0 only), plus the
optional weight/gradient histograms and model graph. Every tag sits under `visual/`, which
sorts after the scalar groups (`lr`, `test`, `train`, `val`, ...), so that TensorBoard's
Time Series opens on the curves:

- `visual/train_batch` (step 0, once per run): a training batch after augmentation,
  un-normalized so it looks as the camera took it;
- `visual/<split>_confusion` (step: epoch, at every evaluation): rows true, columns predicted;
- `visual/test_misclassified`, `visual/test_per_class_acc` (step: last epoch, at the end);
- `visual/test_gradcam` (eval only, in its own folder): each mistake beside its Grad-CAM map.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.datasets.batches import BatchLoader, BatchTransform
from cifar_exp.runtime.distributed import all_gather, all_reduce

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cifar_exp.tracking import RunTracker

log = logging.getLogger(__name__)

BATCH_TAG = "visual/train_batch"
MISCLASSIFIED_TAG = "visual/test_misclassified"
GRADCAM_TAG = "visual/test_gradcam"
PER_CLASS_TAG = "visual/test_per_class_acc"
GRID_IMAGES = 64  # at most this many images of the training batch
MISCLASSIFIED = 16  # most confident mistakes shown at the end
ANNOTATE_UP_TO = 20  # classes; beyond, a confusion matrix's cells are too small for counts


def confusion_tag(split: str) -> str:
    return f"visual/{split}_confusion"


def displayable(images: torch.Tensor, transform: BatchTransform | None) -> torch.Tensor:
    """Undo the transform's normalization (if any): float images in [0, 1] on the CPU."""
    mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
    if mean is not None:
        images = images * std.to(images.device) + mean.to(images.device)
    return images.detach().float().clamp(0, 1).cpu()


def image_grid(images: torch.Tensor, pad: int = 1, fill: float = 0.0) -> torch.Tensor:
    """[N, C, H, W] -> one [C, rows, cols] picture, about square, `pad` pixels of `fill`
    between. (torchvision's make_grid does the same, but its first import costs seconds.)"""
    n, channels, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = images.new_full((channels, rows * (h + pad) + pad, cols * (w + pad) + pad), fill)
    for k, (top, left) in enumerate(_corners(n, h, w, pad)):
        grid[:, top : top + h, left : left + w] = images[k]
    return grid


def _corners(n: int, h: int, w: int, pad: int) -> list[tuple[int, int]]:
    """(top, left) of each image in image_grid's layout."""
    cols = math.ceil(math.sqrt(n))
    return [(pad + (k // cols) * (h + pad), pad + (k % cols) * (w + pad)) for k in range(n)]


class EvalDetails:
    """Confusion matrix and the `keep` most confident mistakes of one evaluation."""

    def __init__(self, keep: int = MISCLASSIFIED) -> None:
        self.keep = keep
        self.confusion: torch.Tensor | None = None  # [true, predicted] counts
        self.image_shape: tuple[int, ...] = ()
        self.confidence = torch.empty(0)
        self.images = torch.empty(0)
        self.true = torch.empty(0, dtype=torch.int64)
        self.predicted = torch.empty(0, dtype=torch.int64)
        self.calibration: torch.Tensor | None = None  # components/calibration.py's sums

    def update(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch (model input, the model's logits, the true labels)."""
        classes = logits.shape[1]
        confidence, predicted = logits.detach().float().softmax(1).max(1)
        counts = torch.bincount(labels * classes + predicted, minlength=classes * classes)
        counts = counts.view(classes, classes)
        if self.confusion is None:  # the first batch: keep the mistakes on its device
            self.confidence, self.true, self.predicted = (
                t.to(images.device) for t in (self.confidence, self.true, self.predicted)
            )
            self.images = images.new_empty(0, *images.shape[1:], dtype=torch.float32)
            self.image_shape = tuple(images.shape[1:])
        self.confusion = counts if self.confusion is None else self.confusion + counts
        # Right answers score -1 and are dropped in reduce(): no data-dependent shapes, so no
        # waiting for the device. Only this batch's top `keep` can join the kept ones.
        score = torch.where(predicted != labels, confidence, -1.0)
        top = score.topk(min(self.keep, len(score))).indices
        self._keep_top(
            torch.cat([self.confidence, score[top]]),
            torch.cat([self.images, images[top].float()]),
            torch.cat([self.true, labels[top]]),
            torch.cat([self.predicted, predicted[top]]),
        )

    def _keep_top(
        self,
        confidence: torch.Tensor,
        images: torch.Tensor,
        true: torch.Tensor,
        predicted: torch.Tensor,
    ) -> None:
        order = confidence.topk(min(self.keep, len(confidence))).indices
        self.confidence, self.images = confidence[order], images[order]
        self.true, self.predicted = true[order], predicted[order]

    def reduce(self, device: torch.device) -> None:
        """Sum the confusion matrices and pool the mistakes of all processes; bring them to
        the CPU (one copy per evaluation), without the right answers."""
        if self.confusion is not None:
            self.confusion = all_reduce(self.confusion).cpu()
        if torch.distributed.is_initialized() and self.confusion is not None:
            # Fixed shapes for all_gather: pad every process's list to `keep` with -1.
            pad = self.keep - len(self.confidence)
            fields = [
                F.pad(self.confidence, (0, pad), value=-1.0),
                torch.cat([self.images, self.images.new_zeros(pad, *self.image_shape)]),
                F.pad(self.true, (0, pad)),
                F.pad(self.predicted, (0, pad)),
            ]
            self._keep_top(*(all_gather(f.to(device)) for f in fields))
        mistakes = self.confidence >= 0
        self.confidence, self.images, self.true, self.predicted = (
            t[mistakes].cpu() for t in (self.confidence, self.images, self.true, self.predicted)
        )


class Pictures:
    """Writes a run's pictures through `tracker` (nothing on ranks other than 0).

    The collective parts (EvalDetails.reduce) run on every process; only writing is rank 0's.
    """

    def __init__(
        self,
        tracker: RunTracker,
        classes: list[str],
        train_transform: BatchTransform | None,
        eval_transform: BatchTransform | None,
        net: nn.Module,
        images: bool = True,
        histogram_every: int = 0,
        graph: bool = False,
    ) -> None:
        self.tracker = tracker
        self.classes = classes
        self.train_transform = train_transform
        self.eval_transform = eval_transform
        self.net = net  # the model itself, not a DDP or compiled wrapper
        self.images = images
        self.histogram_every = histogram_every
        self.graph = graph

    def details(self) -> EvalDetails | None:
        """What an evaluation should gather for the pictures (None: nothing)."""
        return EvalDetails() if self.images else None

    def started(self, loader: BatchLoader, first_time: bool) -> None:
        """At the start of training (first_time: of the run, not of a resumed attempt), with
        the training loader set to the epoch about to run."""
        if self.tracker.writer is None or not (self.images and first_time or self.graph):
            return
        # The batch the model is about to see: the loader repeats it exactly when iterated.
        batch = next(iter(loader))[0]
        if self.images and first_time:
            grid = image_grid(displayable(batch[:GRID_IMAGES], self.train_transform))
            self.tracker.log_image(BATCH_TAG, grid, 0)
        if self.graph:
            self._add_graph(batch[:1])

    def _add_graph(self, example: torch.Tensor) -> None:
        # Traced in eval mode: a trace in train mode would move BatchNorm's running
        # statistics (and draw dropout's random numbers), changing the run it records.
        was_training = self.net.training
        self.net.eval()
        try:
            with warnings.catch_warnings():
                # add_graph can only trace with jit.trace, whose deprecation notice is not ours.
                warnings.simplefilter("ignore", FutureWarning)
                self.tracker.writer.add_graph(self.net, example.float())
        except Exception as err:  # a model jit.trace cannot follow: the run goes on without
            log.warning("could not trace the model for TensorBoard's Graphs tab: %s", err)
        finally:
            self.net.train(was_training)

    def evaluated(self, split: str, epoch: int, details: EvalDetails | None) -> None:
        if details is None or details.confusion is None or self.tracker.writer is None:
            return
        figure = confusion_figure(details.confusion, self.classes, f"{split}, epoch {epoch}")
        self.tracker.log_figure(confusion_tag(split), figure, epoch)

    def finished(self, epoch: int, test: EvalDetails | None) -> None:
        """At the end, with the details of the last test-split evaluation."""
        if test is None or test.confusion is None or self.tracker.writer is None:
            return
        figure = per_class_figure(test.confusion, self.classes)
        self.tracker.log_figure(PER_CLASS_TAG, figure, epoch)
        if len(test.confidence):
            shown = displayable(test.images, self.eval_transform)
            figure = misclassified_figure(
                shown, test.true, test.predicted, test.confidence, self.classes
            )
            self.tracker.log_figure(MISCLASSIFIED_TAG, figure, epoch)
        self.tracker.writer.flush()

    def epoch_done(self, epoch: int) -> None:
        """Weight and gradient histograms every `histogram_every` epochs (0: never)."""
        if not self.histogram_every or epoch % self.histogram_every or self.tracker.writer is None:
            return
        writer = self.tracker.writer
        for name, param in self.net.named_parameters():
            writer.add_histogram(f"weights/{name}", param.detach().float(), epoch)
            if param.grad is not None:
                writer.add_histogram(f"gradients/{name}", param.grad.detach().float(), epoch)


def _figure(width: float, height: float, **margins: float) -> Figure:
    # A bare Figure (no pyplot state): nothing lingers between calls, no GUI backend needed.
    # Fixed margins: a constrained layout would cost as much again as drawing the figure.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=80)
    figure.subplots_adjust(**margins)
    return figure


def confusion_figure(confusion: torch.Tensor, classes: list[str], title: str) -> Figure:
    """Counts, rows = true class, columns = predicted; colour is the row's fraction."""
    n = len(classes)
    size = max(4.0, 0.45 * n + 1.5) if n <= ANNOTATE_UP_TO else 10.0
    figure = _figure(size, size, left=0.2, bottom=0.2, right=0.97, top=0.94)
    ax = figure.add_subplot()
    counts = confusion.numpy()
    rows = counts.sum(1, keepdims=True).clip(min=1)
    ax.imshow(counts / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= ANNOTATE_UP_TO:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        for i, j in zip(*counts.nonzero(), strict=True):
            dark = counts[i, j] / rows[i, 0] > 0.5
            color = "white" if dark else "black"
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    return figure


def per_class_figure(confusion: torch.Tensor, classes: list[str]) -> Figure:
    """Test accuracy of each class (recall: correct / images of the class), as bars."""
    counts = confusion.double()
    accuracy = (counts.diag() / counts.sum(1).clamp_min(1)).tolist()
    height = max(2.5, 0.25 * len(classes) + 1.0)
    figure = _figure(6.0, height, left=0.2, right=0.97, bottom=0.5 / height, top=1 - 0.4 / height)
    ax = figure.add_subplot()
    bars = ax.barh(range(len(classes)), accuracy, color="tab:blue")
    ax.set_yticks(range(len(classes)), classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("test accuracy")
    ax.bar_label(bars, labels=[f"{a:.3f}" for a in accuracy], fontsize=7, padding=2)
    total = counts.diag().sum().item() / max(counts.sum().item(), 1)
    ax.set_title(f"per-class test accuracy (overall {total:.4f})")
    return figure


def misclassified_figure(
    images: torch.Tensor,
    true: torch.Tensor,
    predicted: torch.Tensor,
    confidence: torch.Tensor,
    classes: list[str],
) -> Figure:
    """The images with 'true / predicted (confidence)' above each, most confident first.

    One grid in one axes: an axes per image would cost several times as much to draw."""
    n, _, h, w = images.shape
    pad = max(2, h * 2 // 5)  # room above each image for its two-line title
    grid = image_grid(images, pad, fill=1.0)
    cols = math.ceil(math.sqrt(n))
    figure = _figure(
        2.0 * cols, 2.0 * grid.shape[1] / grid.shape[2] * cols, left=0, right=1, bottom=0, top=1
    )
    ax = figure.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    for k, (top, left) in enumerate(_corners(n, h, w, pad)):
        title = f"true {classes[true[k]]}\npred {classes[predicted[k]]} ({confidence[k]:.2f})"
        ax.text(left + w / 2, top - 0.5, title, ha="center", va="bottom", fontsize=8)
    return figure


def attention_tiles(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Each image [3, H, W] in [0, 1] beside itself under its map [H, W] in [0, 1] (a jet
    colour scale, half opaque): [N, 3, H, 2 W + 1], for misclassified_figure."""
    from matplotlib import colormaps

    heat = torch.from_numpy(colormaps["jet"](maps.numpy())[..., :3]).permute(0, 3, 1, 2)
    overlay = 0.5 * images + 0.5 * heat.float()
    gap = images.new_ones(images.shape[0], 3, images.shape[2], 1)
    return torch.cat([images, gap, overlay], dim=3)
