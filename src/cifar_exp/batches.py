"""Batches cut from a uint8 data set with tensor ops (no per-image Python), turned into
float model input on the device the model runs on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from cifar_exp.datasets.base import Split
from cifar_exp.errors import ConfigError


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


class BatchMixer(Protocol):
    """Mixes a training batch (MixUp, CutMix: augment.BatchMix), drawing from the batch's
    generator: (images, labels) -> (mixed images, soft targets [N, classes])."""

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def batch_generator(seed: int, epoch: int, batch: int, rank: int) -> torch.Generator:
    """The random numbers of one batch's augmentation: a function of where the batch is, so a
    resumed epoch or another process never depends on the draws of batches it skipped."""
    return torch.Generator().manual_seed(hash((seed, epoch, batch, rank)) & (2**63 - 1))


class BatchLoader:
    """Yields (float images, labels) batches on `device` from a uint8 Split.

    Images are scaled to [0, 1], then passed through `transform` (augmentation and
    normalization of the whole batch) if one is given, then through `mix` (MixUp, CutMix),
    which yields soft targets [N, classes] in place of the labels. The shuffling order and
    the random augmentations of an epoch depend only on (seed, epoch), so runs repeat
    exactly and any epoch can be reproduced on its own; `set_epoch(epoch, start_batch)`
    continues an epoch from the middle, as a resumed run does. The split may live on the
    device already.

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
        mix: BatchMixer | None = None,
    ) -> None:
        if len(split) < world_size:
            raise ConfigError(
                f"a split has {len(split)} image(s), fewer than the {world_size} processes; "
                "use more data or fewer processes"
            )
        self.split = split
        self.transform = transform
        self.mix = mix
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
            labels = labels.to(self.device, non_blocking=True)
            generator = batch_generator(self.seed, self.epoch, b, self.rank)
            if self.transform is not None:
                positions = torch.arange(lo, hi) if order is None else index
                images = self.transform(images, generator, positions, self.epoch)
            if self.mix is not None:
                images, labels = self.mix(images, labels, generator)
            yield images, labels
