"""The Images tab (pictures.py): what a run writes, read back from its TensorBoard events."""

import io
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from cifar_exp.datasets.augment import BatchAugment
from cifar_exp.tracking.pictures import (
    BATCH_TAG,
    MISCLASSIFIED,
    MISCLASSIFIED_TAG,
    PER_CLASS_TAG,
    EvalDetails,
    confusion_tag,
    displayable,
    image_grid,
)
from helpers.cli import run_in_process
from helpers.events import load_events
from helpers.overrides import TINY

# A validation split, so the per-epoch confusion matrices are val's and the end is test's.
RUN = [*TINY, "trainer.log_images=true", "trainer.epochs=2", "dataset.val_size=64"]


def image_steps(acc):
    return {tag: [e.step for e in acc.Images(tag)] for tag in acc.Tags()["images"]}


@pytest.fixture(scope="module")
def pictured_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("pictures")
    overrides = ["trainer.histogram_every=2", "trainer.log_graph=true"]
    assert run_in_process(*RUN, *overrides, f"hydra.run.dir={cwd / 'run'}", cwd=cwd) == 0
    return load_events(cwd / "run")


def test_a_run_writes_batch_confusion_mistakes_and_per_class_accuracy(pictured_run):
    assert image_steps(pictured_run) == {
        BATCH_TAG: [0],
        confusion_tag("val"): [1, 2],
        PER_CLASS_TAG: [2],
        MISCLASSIFIED_TAG: [2],
    }
    batch = pictured_run.Images(BATCH_TAG)[0]
    grid = Image.open(io.BytesIO(batch.encoded_image_string))
    # 32 images of 32x32 in rows of 6 with 1-pixel padding: 6 columns, 6 rows (the last short).
    assert grid.size == (batch.width, batch.height) == (6 * 33 + 1, 6 * 33 + 1)
    for tag in (confusion_tag("val"), PER_CLASS_TAG, MISCLASSIFIED_TAG):
        figure = Image.open(io.BytesIO(pictured_run.Images(tag)[-1].encoded_image_string))
        darkest, brightest = figure.convert("L").getextrema()
        assert brightest - darkest > 100, f"{tag} is a blank picture"


def test_histograms_every_n_epochs_and_the_graph_when_asked(pictured_run):
    tags = pictured_run.Tags()
    assert tags["graph"] is True
    weights = [t for t in tags["histograms"] if t.startswith("weights/")]
    gradients = [t for t in tags["histograms"] if t.startswith("gradients/")]
    assert weights and len(gradients) == len(weights)
    for tag in weights + gradients:
        assert [e.step for e in pictured_run.Histograms(tag)] == [2]  # every 2 of 2 epochs


def test_the_switch_turns_pictures_off_and_histograms_and_graph_are_off_by_default(tmp_path):
    assert run_in_process(*RUN, "trainer.log_images=false", "hydra.run.dir=run", cwd=tmp_path) == 0
    acc = load_events(tmp_path / "run")
    tags = acc.Tags()
    assert tags["images"] == [] and tags["histograms"] == [] and tags["graph"] is False
    assert [e.step for e in acc.Scalars("val/acc")] == [1, 2]  # the curves are all there


def test_displayable_undoes_the_normalization():
    images = torch.rand(4, 3, 8, 8)
    augment = BatchAugment(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    normalized = augment(images, torch.Generator().manual_seed(0))
    assert not torch.allclose(normalized, images)
    assert torch.allclose(displayable(normalized, augment), images, atol=1e-6)
    assert torch.equal(displayable(images * 2, None), (images * 2).clamp(0, 1))


def three_batches():
    """Logits and labels with known mistakes: batch b, image i is confident by (b, i)."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for b in range(3):
        labels = torch.randint(0, 4, (10,), generator=gen)
        logits = torch.randn(10, 4, generator=gen) * (b + 1)
        images = torch.full((10, 3, 2, 2), float(b)) + torch.arange(10).view(10, 1, 1, 1) / 100
        batches.append((images, logits, labels))
    return batches


def brute_force(batches, keep):
    images, logits, labels = (torch.cat(part) for part in zip(*batches, strict=True))
    confidence, predicted = logits.softmax(1).max(1)
    confusion = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in zip(labels, predicted, strict=True):
        confusion[t, p] += 1
    wrong = (predicted != labels).nonzero().squeeze(1)
    top = wrong[confidence[wrong].argsort(descending=True)[:keep]]
    return confusion, confidence[top], images[top], labels[top], predicted[top]


def test_eval_details_count_the_confusion_and_keep_the_most_confident_mistakes():
    batches = three_batches()
    details = EvalDetails(keep=5)
    for batch in batches:
        details.update(*batch)
    details.reduce(torch.device("cpu"))
    confusion, confidence, images, true, predicted = brute_force(batches, keep=5)
    assert torch.equal(details.confusion, confusion) and confusion.sum() == 30
    assert torch.allclose(details.confidence, confidence)
    assert torch.equal(details.images, images)
    assert torch.equal(details.true, true) and torch.equal(details.predicted, predicted)


def _reduce_in_process(rank, port, world_size, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        details = EvalDetails(keep=MISCLASSIFIED)
        # Rank 0 scores batches 0 and 2, rank 1 batch 1: shares of different sizes.
        for b, batch in enumerate(three_batches()):
            if b % world_size == rank:
                details.update(*batch)
        details.reduce(torch.device("cpu"))
        results[rank] = (details.confusion, details.confidence, details.true, details.predicted)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.integration  # two real processes: with the integration tests
def test_eval_details_are_summed_and_pooled_over_processes():
    """Two real Gloo processes, as under torchrun: every rank ends with the whole picture."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_reduce_in_process, args=(port, 2, results), nprocs=2)
    confusion, confidence, _, true, predicted = brute_force(three_batches(), MISCLASSIFIED)
    for rank in (0, 1):
        got = results[rank]
        assert torch.equal(got[0], confusion)
        assert torch.allclose(got[1], confidence)
        assert torch.equal(got[2], true) and torch.equal(got[3], predicted)


def test_a_resumed_run_keeps_one_batch_grid_and_continues_the_matrices(tmp_path):
    assert run_in_process(*TINY, "trainer.log_images=true", "hydra.run.dir=run", cwd=tmp_path) == 0
    assert run_in_process("resume=run", "trainer.epochs=2", cwd=tmp_path) == 0
    assert image_steps(load_events(tmp_path / "run")) == {
        BATCH_TAG: [0],
        confusion_tag("test"): [1, 2],
        # The end of each attempt: the first finished at epoch 1, the resumed one at 2.
        PER_CLASS_TAG: [1, 2],
        MISCLASSIFIED_TAG: [1, 2],
    }


@pytest.mark.parametrize("n", [32, 7, 64])
def test_image_grid_lays_out_like_torchvisions_make_grid(n):
    from torchvision.utils import make_grid

    images = torch.rand(n, 3, 8, 8)
    expected = make_grid(images, nrow=math.ceil(math.sqrt(n)), padding=1)
    assert torch.equal(image_grid(images), expected)


def test_many_classes_get_an_unannotated_matrix_and_taller_bars():
    from torch.utils.tensorboard._utils import figure_to_image

    from cifar_exp.tracking.pictures import confusion_figure, per_class_figure

    classes = [f"c{i}" for i in range(100)]  # CIFAR-100: counts would not fit in the cells
    confusion = torch.randint(0, 5, (100, 100))
    matrix = confusion_figure(confusion, classes, "test, epoch 1")
    assert len(matrix.axes[0].texts) == 0
    assert figure_to_image(matrix).shape == (3, 800, 800)
    bars = per_class_figure(confusion, classes)
    assert (
        figure_to_image(bars).shape[1]
        > figure_to_image(per_class_figure(confusion[:10, :10], classes[:10])).shape[1]
    )
