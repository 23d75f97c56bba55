"""Parts of a split that stand for the whole (datasets/subsets.py): a limited evaluation, the
whitening estimate and the validation split see every class in its share, never a class-sorted
folder's first images."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from cifar_exp.datasets import hold_out
from cifar_exp.datasets.base import DataBundle, Split
from cifar_exp.datasets.subsets import per_class_quota, stratified_subset
from cifar_exp.training.build import INIT_IMAGES, initialize_from_training_data
from cifar_exp.training.resume import saved_config
from helpers.cli import run_in_process
from helpers.overrides import TINY_TRAINER


def sorted_labels(counts):
    """Labels grouped by class, as an image folder's split is: [0, 0, ..., 1, 1, ...]."""
    return torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])


def test_a_subset_keeps_each_class_share_and_the_same_seed_the_same_images():
    labels = sorted_labels([500] * 10)
    part = stratified_subset(labels, 2000, seed=3)
    assert len(part) == len(set(part.tolist())) == 2000
    assert torch.bincount(labels[part]).tolist() == [200] * 10
    assert torch.equal(part, stratified_subset(labels, 2000, seed=3))
    assert not torch.equal(part, stratified_subset(labels, 2000, seed=4))
    assert labels[part[:50]].unique().numel() > 1  # shuffled, not grouped by class


def test_unbalanced_classes_keep_their_proportions_and_each_class_is_seen():
    counts = torch.tensor([900, 90, 9, 1])
    assert per_class_quota(counts, 100).tolist() == [89, 9, 1, 1]
    assert per_class_quota(counts, 4).tolist() == [1, 1, 1, 1]
    assert per_class_quota(counts, 2).tolist() == [2, 0, 0, 0]
    assert sum(per_class_quota(counts, 333).tolist()) == 333


def test_the_validation_split_is_stratified_and_old_runs_keep_their_random_one():
    split = Split(torch.zeros(1000, 3, 2, 2, dtype=torch.uint8), sorted_labels([100] * 10))
    train, val = hold_out(split, 100, seed=0)
    assert torch.bincount(val.labels).tolist() == [10] * 10
    assert len(train) == 900 and torch.bincount(train.labels).tolist() == [90] * 10
    _, legacy = hold_out(split, 100, seed=0, stratified=False)
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(legacy.labels, split.labels[order[:100]])
    # A checkpoint from before the key existed held out the random split: it still does.
    old = saved_config(OmegaConf.to_yaml({"dataset": {"name": "synthetic", "val_size": 8}}), "x")
    assert old.dataset.val_stratified is False


class RecordsItsInit(torch.nn.Module):
    """A model initialized from the data that keeps the images it was given."""

    def init_from_data(self, images):
        self.seen = images


def test_the_whitening_estimate_sees_every_class_of_a_sorted_split():
    # Each class one gray level, sorted by class as an image folder is: 600 images a class.
    labels = sorted_labels([600] * 10)
    images = (labels * 20).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    data = DataBundle(Split(images, labels), Split(images[:10], labels[:10]), list("abcdefghij"))
    net = RecordsItsInit()
    initialize_from_training_data(net, data, None, torch.device("cpu"), seed=0)
    levels = (net.seen[:, 0, 0, 0] * 255).round().long() // 20
    assert len(net.seen) == INIT_IMAGES
    assert torch.bincount(levels).tolist() == [INIT_IMAGES // 10] * 10


@pytest.fixture
def sorted_folder(tmp_path):
    """An image folder of 4 classes whose test images the model tells apart by colour."""
    from PIL import Image

    colors = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10)]
    for split, count in (("train", 24), ("test", 16)):
        for k, color in enumerate(colors):
            folder = tmp_path / "images" / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), color).save(folder / f"{i:03d}.png")
    return tmp_path / "images"


def test_a_limited_evaluation_of_a_sorted_folder_scores_every_class(sorted_folder, tmp_path):
    """8 of 64 test images: before, the folder's first 8 (all of class c0); now 2 a class."""
    run_dir = tmp_path / "run"
    overrides = [
        *TINY_TRAINER,
        "dataset=imagefolder",
        f"dataset.root={sorted_folder}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "trainer.eval_batch_size=8",
        "trainer.limit_eval_batches=1",
        f"hydra.run.dir={run_dir}",
    ]
    assert run_in_process(*overrides, cwd=tmp_path) == 0
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert (final["test_images"], final["test_images_total"]) == (8, 64)
    assert (final["test_classes"], final["test_classes_total"]) == (4, 4)
    assert "on 8 of 64 test images, all 4 classes" in (run_dir / "run.log").read_text()
