"""Data sets as uint8 tensors, and batches cut from them with tensor ops.

Every source returns a `DataBundle`: each split is one uint8 tensor [N, 3, H, W] plus int64
labels, decoded once. Batching and shuffling index those tensors directly (no per-image
Python), and conversion to float happens on the device the model runs on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cifar_exp.errors import ConfigError, UserError
from cifar_exp.registry import Registry

log = logging.getLogger(__name__)

DATASETS = Registry("dataset")


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 3, H, W]
    labels: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataBundle:
    train: Split
    test: Split
    classes: list[str]


def load_dataset(options: dict[str, Any]) -> DataBundle:
    """Build the data set named by options['name'] with the rest of the options."""
    options = dict(options)
    name = options.pop("name")
    num_classes = options.get("num_classes")
    bundle = DATASETS.build(name, **options)
    if num_classes is not None and num_classes != len(bundle.classes):
        raise ConfigError(
            f"dataset.num_classes is {num_classes} but the {name} data has "
            f"{len(bundle.classes)} classes"
        )
    return bundle


@DATASETS.register("cifar10")
def cifar10(root: str, download: bool = True, num_classes: int = 10) -> DataBundle:
    from torchvision.datasets import CIFAR10

    root_path = Path(root).expanduser().absolute()
    splits = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root_path), train=train, download=download)
        except (OSError, RuntimeError) as err:
            how = "could not be downloaded" if download else "dataset.download is false"
            raise UserError(
                f"CIFAR-10 is not in {root_path} and {how} ({err}). "
                "Fix: run once where there is a network, copy cifar-10-batches-py into that "
                "folder, point dataset.root=... at a folder that has it, or try dataset=synthetic."
            ) from err
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        splits.append(Split(images, torch.tensor(ds.targets, dtype=torch.int64)))
    return DataBundle(train=splits[0], test=splits[1], classes=list(ds.classes))


@DATASETS.register("synthetic")
def synthetic(
    num_classes: int = 10,
    train_size: int = 2000,
    test_size: int = 500,
    image_size: int = 32,
    noise: float = 48.0,
    seed: int = 0,
) -> DataBundle:
    """Each class is a random pattern; its images are noisy copies of it, so it is learnable."""
    gen = torch.Generator().manual_seed(seed)
    shape = (3, image_size, image_size)
    patterns = torch.randint(0, 256, (num_classes, *shape), generator=gen).float()

    def make(n: int) -> Split:
        labels = torch.randperm(n, generator=gen) % num_classes
        images = patterns[labels] + noise * torch.randn((n, *shape), generator=gen)
        return Split(images.round().clamp(0, 255).to(torch.uint8), labels)

    return DataBundle(
        train=make(train_size),
        test=make(test_size),
        classes=[f"class_{i}" for i in range(num_classes)],
    )


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images [N, 3, H, W] -> the float tensor a model sees, on `device`.

    The one place that turns stored pixels into model input: training, evaluation and
    `cifar_exp.predict` all go through it, so they cannot drift apart.
    """
    return images.to(device, non_blocking=True).float().div_(255)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images [N, 3, h, w] of any size -> uint8 [N, 3, *size] (antialiased bilinear)."""
    from torchvision.transforms.v2.functional import resize

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return resize(images, list(size), antialias=True)


class BatchLoader:
    """Yields (float images in [0, 1], labels) batches on `device` from a uint8 Split.

    With shuffling, the order of an epoch depends only on (seed, epoch), so runs repeat
    exactly and any epoch can be reproduced on its own; `set_epoch(epoch, start_batch)`
    continues an epoch from the middle, as a resumed run does. `batch_size` is the global
    batch: with `world_size` processes, each yields its `rank`'s contiguous share of every
    batch (shares differ by at most one image), so together they see each image once per
    epoch. A last batch too small to give every process an image joins the batch before it.
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
    ) -> None:
        if len(split) < world_size:
            raise ConfigError(
                f"a split has {len(split)} image(s), fewer than the {world_size} processes; "
                "use more data or fewer processes"
            )
        self.split = split
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
            order = torch.randperm(len(self.split), generator=gen)
        else:
            order = None
        for b in range(self.start_batch, self.num_batches):
            lo, hi = self._share(b)
            if order is None:
                images, labels = self.split.images[lo:hi], self.split.labels[lo:hi]
            else:
                index = order[lo:hi]
                images, labels = self.split.images[index], self.split.labels[index]
            yield to_model_input(images, self.device), labels.to(self.device, non_blocking=True)
