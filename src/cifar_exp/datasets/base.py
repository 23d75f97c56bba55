"""What every data source shares: its options' base, the registry it joins, and the uint8
tensors it returns.

Every source returns a `DataBundle`: each split is one uint8 tensor [N, 3, H, W] plus int64
labels, decoded once (batches are cut from them in `cifar_exp.datasets.batches`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cifar_exp.registry import Options, Registry, option, require

DATASETS = Registry("dataset")


@dataclass(frozen=True)
class Whole:
    """The split a part was drawn from (datasets/subsets.py): its images and classes."""

    images: int
    classes: int


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]
    whole: Whole | None = None  # set when this split stands for a larger one

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device), self.whole)


@dataclass
class DataBundle:
    train: Split
    test: Split
    classes: list[str]
    val: Split | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable files left out

    def to(self, device: torch.device) -> DataBundle:
        val = None if self.val is None else self.val.to(device)
        return DataBundle(
            self.train.to(device), self.test.to(device), self.classes, val, self.skipped
        )


# Where data sets live unless dataset.root says otherwise; relative to the launch folder.
DATA_ROOT = "${oc.env:CIFAR_EXP_DATA,data}"


@dataclass
class DatasetOptions(Options):
    """Options every source shares. load_dataset and run.py act on them; of the sources, only
    synthetic reads one (num_classes: it makes that many classes)."""

    num_classes: int | None = 10
    # Images held out of train (chosen by split_seed) for the per-epoch evaluation.
    val_size: int = option(0, compared=True)
    # The held-out images are drawn class by class, each class's share as in the training
    # split; false: drawn at random over the whole split (as runs made before this key did).
    val_stratified: bool = True
    # Chooses the validation split, and the images a limited evaluation scores.
    split_seed: int = 0
    on_device: bool = False  # keep the whole uint8 data set on the training device

    def check(self) -> None:
        ok = self.num_classes is None or self.num_classes >= 2
        require(ok, "num_classes", ">= 2 or null (follow the data)", self.num_classes)
        require(self.val_size >= 0, "val_size", ">= 0", self.val_size)

    def image_shape(self) -> tuple[int, int, int]:
        """[3, H, W] of the images, from the options alone (no file is read): CIFAR's."""
        return (3, 32, 32)

    def known_classes(self) -> int | None:
        """The number of classes as far as the options say, without reading any image."""
        return self.num_classes
