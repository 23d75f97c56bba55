"""Data sets as uint8 tensors, and batches cut from them with tensor ops.

Every source returns a `DataBundle`: each split is one uint8 tensor [N, 3, H, W] plus int64
labels, decoded once. Batching and shuffling index those tensors directly (no per-image
Python), and conversion to float happens on the device the model runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from omegaconf import DictConfig

from cifar_exp.errors import ConfigError
from cifar_exp.registry import Options, Registry, require

log = logging.getLogger(__name__)

DATASETS = Registry("dataset")


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


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
    val_size: int = 0  # images held out of train (seeded by split_seed) for per-epoch eval
    split_seed: int = 0
    on_device: bool = False  # keep the whole uint8 data set on the training device

    def check(self) -> None:
        ok = self.num_classes is None or self.num_classes >= 2
        require(ok, "num_classes", ">= 2 or null (follow the data)", self.num_classes)
        require(self.val_size >= 0, "val_size", ">= 0", self.val_size)


@dataclass
class Cifar10Options(DatasetOptions):
    root: str = DATA_ROOT
    download: bool = True
    cache: bool = True


@dataclass
class Cifar100Options(Cifar10Options):
    num_classes: int | None = 100


@dataclass
class ImageFolderOptions(DatasetOptions):
    root: str = DATA_ROOT
    num_classes: int | None = None  # null: as many as the folder has
    image_size: int = 32
    max_per_class: int | None = None  # keep the first N files (sorted) of each class folder
    skip_bad_files: bool = False
    num_workers: int = 2
    cache_dir: str = "${oc.env:CIFAR_EXP_CACHE,'~/.cache/cifar-exp'}"

    def check(self) -> None:
        super().check()
        require(self.image_size >= 1, "image_size", ">= 1", self.image_size)
        ok = self.max_per_class is None or self.max_per_class >= 1
        require(ok, "max_per_class", ">= 1 or null", self.max_per_class)
        require(
            self.num_workers >= 0,
            "num_workers",
            ">= 0 (0 = decode in this process)",
            self.num_workers,
        )


@dataclass
class SyntheticOptions(DatasetOptions):
    train_size: int = 2000
    test_size: int = 500
    image_size: int = 32
    noise: float = 48.0
    seed: int = 0

    def check(self) -> None:
        super().check()
        for key in ("train_size", "test_size", "image_size"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        require(self.noise >= 0, "noise", ">= 0", self.noise)


def load_dataset(node: dict[str, Any] | DictConfig) -> DataBundle:
    """Build the data set `node` names, from its checked options.

    `val_size` > 0 holds that many training images out as the validation split, chosen by
    `split_seed` (so every run of a sweep validates on the same images).
    """
    options = DATASETS.options(node)
    bundle = DATASETS.build(options)
    name, num_classes = options.name, options.num_classes
    if num_classes is not None and num_classes != len(bundle.classes):
        raise ConfigError(
            f"dataset.num_classes is {num_classes} but the {name} data has "
            f"{len(bundle.classes)} classes; set dataset.num_classes={len(bundle.classes)} "
            "(or null to follow the data)"
        )
    if options.val_size:
        if bundle.val is not None:
            raise ConfigError(
                f"dataset.val_size={options.val_size} but the {name} data already has a val "
                "split; leave dataset.val_size=0 to use it"
            )
        bundle.train, bundle.val = hold_out(bundle.train, options.val_size, options.split_seed)
    return bundle


def hold_out(split: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Split `size` random samples (chosen by `seed`) off `split`: (the rest, the held out)."""
    if size >= len(split):
        raise ConfigError(
            f"dataset.val_size={size} leaves no training images (the train split has "
            f"{len(split)}); choose a smaller dataset.val_size"
        )
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.subset(order[size:]), split.subset(order[:size])


@DATASETS.register("synthetic", SyntheticOptions)
def synthetic(o: SyntheticOptions) -> DataBundle:
    """Each class is a random pattern; its images are noisy copies of it, so it is learnable."""
    num_classes = 10 if o.num_classes is None else o.num_classes
    gen = torch.Generator().manual_seed(o.seed)
    shape = (3, o.image_size, o.image_size)
    patterns = torch.randint(0, 256, (num_classes, *shape), generator=gen).float()

    def make(n: int) -> Split:
        labels = torch.randperm(n, generator=gen) % num_classes
        images = patterns[labels] + o.noise * torch.randn((n, *shape), generator=gen)
        return Split(images.round().clamp(0, 255).to(torch.uint8), labels)

    return DataBundle(
        train=make(o.train_size),
        test=make(o.test_size),
        classes=[f"class_{i}" for i in range(num_classes)],
    )


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> float images in [0, 1] on `device`.

    The one place that turns stored pixels into model input before a batch transform
    (augmentation, normalization): training, evaluation and `cifar_exp.predict` all go
    through it, so they cannot drift apart.
    """
    return images.to(device, non_blocking=True).float().div_(255)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images [N, 3, h, w] of any size -> uint8 [N, 3, *size] (antialiased bilinear)."""
    from torchvision.transforms.v2.functional import resize

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return resize(images, list(size), antialias=True)


class BatchTransform(Protocol):
    """Float images in [0, 1] on the device -> transformed images (see augment.py), given the
    batch's generator, the images' positions in the split and the epoch."""

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        index: torch.Tensor | None = None,
        epoch: int = 0,
    ) -> torch.Tensor: ...


def batch_generator(seed: int, epoch: int, batch: int, rank: int) -> torch.Generator:
    """The random numbers of one batch's augmentation: a function of where the batch is, so a
    resumed epoch or another process never depends on the draws of batches it skipped."""
    return torch.Generator().manual_seed(hash((seed, epoch, batch, rank)) & (2**63 - 1))


class BatchLoader:
    """Yields (float images, labels) batches on `device` from a uint8 Split.

    Images are scaled to [0, 1], then passed through `transform` (augmentation and
    normalization of the whole batch) if one is given. The shuffling order and the random
    augmentations of an epoch depend only on (seed, epoch), so runs repeat exactly and any
    epoch can be reproduced on its own; `set_epoch(epoch, start_batch)` continues an epoch
    from the middle, as a resumed run does. The split may live on the device already.

    `batch_size` is the global batch: with `world_size` processes, each yields its `rank`'s
    contiguous share of every batch (shares differ by at most one image), so together they
    see each image once per epoch. A last batch too small to give every process an image
    joins the batch before it.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        limit_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        transform: BatchTransform | None = None,
    ) -> None:
        if len(split) < world_size:
            raise ConfigError(
                f"a split has {len(split)} image(s), fewer than the {world_size} processes; "
                "use more data or fewer processes"
            )
        self.split = split
        self.transform = transform
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        n = len(split)
        self.full_batches = -(-n // batch_size)
        if self.full_batches > 1 and n - (self.full_batches - 1) * batch_size < world_size:
            self.full_batches -= 1
        self.num_batches = (
            self.full_batches if limit_batches is None else min(self.full_batches, limit_batches)
        )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        return self.num_batches

    def _share(self, b: int) -> tuple[int, int]:
        """This rank's [start, end) positions within the epoch's order for batch b."""
        lo = b * self.batch_size
        hi = len(self.split) if b == self.full_batches - 1 else lo + self.batch_size
        size, extra = divmod(hi - lo, self.world_size)
        start = lo + self.rank * size + min(self.rank, extra)
        return start, start + size + (self.rank < extra)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(len(self.split), generator=gen).to(self.split.labels.device)
        else:
            order = None
        for b in range(self.start_batch, self.num_batches):
            lo, hi = self._share(b)
            if order is None:
                images, labels = self.split.images[lo:hi], self.split.labels[lo:hi]
            else:
                index = order[lo:hi]
                images, labels = self.split.images[index], self.split.labels[index]
            images = to_model_input(images, self.device)
            if self.transform is not None:
                generator = batch_generator(self.seed, self.epoch, b, self.rank)
                positions = torch.arange(lo, hi) if order is None else index
                images = self.transform(images, generator, positions, self.epoch)
            yield images, labels.to(self.device, non_blocking=True)


# The file-based sources register themselves in DATASETS when imported.
from cifar_exp.datasets import cifar, imagefolder  # noqa: E402, F401
