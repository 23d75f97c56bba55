"""Batches cut from a uint8 data set with tensor ops (no per-image Python), turned into
float model input on the device the model runs on."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Protocol

import torch
import torch.utils.data

from cifar_exp.datasets.base import Split
from cifar_exp.errors import ConfigError
from cifar_exp.runtime.signals import die_with_parent


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
    joins the batch before it; with `drop_last` every batch is full and the images left over
    (a different few each epoch when shuffled) are left out, as airbench does.
    `limit_epoch(epoch, batches)` cuts one epoch short (a fractional last epoch).

    `workers` > 0 prepares the batches ahead in that many processes (a split kept on the
    device is prepared in place, as with 0), with the same result.
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
        workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(split) < world_size:
            raise ConfigError(
                f"a split has {len(split)} image(s), fewer than the {world_size} processes; "
                "use more data or fewer processes"
            )
        self.split = split
        self.transform = transform
        self.mix = mix
        self.workers = workers if split.images.device.type == "cpu" else 0
        self._pool: torch.utils.data.DataLoader | None = None
        self.batch_size = batch_size
        self.device = device
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        n = len(split)
        self.drop_last = drop_last and n >= batch_size
        self.full_batches = n // batch_size if self.drop_last else -(-n // batch_size)
        if self.full_batches > 1 and n - (self.full_batches - 1) * batch_size < world_size:
            self.full_batches -= 1
        self.num_batches = (
            self.full_batches if limit_batches is None else min(self.full_batches, limit_batches)
        )
        self.short_epoch: tuple[int, int] | None = None  # (epoch, its batches)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def limit_epoch(self, epoch: int, batches: int) -> None:
        """Epoch `epoch` has only its first `batches` batches."""
        self.short_epoch = (epoch, min(batches, self.num_batches))

    def __len__(self) -> int:
        """The batches of the epoch set (set_epoch)."""
        if self.short_epoch is not None and self.short_epoch[0] == self.epoch:
            return self.short_epoch[1]
        return self.num_batches

    def _share(self, b: int) -> tuple[int, int]:
        """This rank's [start, end) positions within the epoch's order for batch b."""
        lo = b * self.batch_size
        last = b == self.full_batches - 1 and not self.drop_last
        hi = len(self.split) if last else lo + self.batch_size
        size, extra = divmod(hi - lo, self.world_size)
        start = lo + self.rank * size + min(self.rank, extra)
        return start, start + size + (self.rank < extra)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.workers:
            yield from self._prepared_ahead()
            return
        order = self.order(self.epoch)
        for b in range(self.start_batch, len(self)):
            yield self.batch(self.epoch, b, order, self.device)

    def order(self, epoch: int) -> torch.Tensor | None:
        """The epoch's shuffled positions (None: the split's own order)."""
        if not self.shuffle:
            return None
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.split), generator=gen).to(self.split.labels.device)

    def batch(
        self, epoch: int, b: int, order: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of batch `b` of `epoch`, transformed on `device`: a function of
        (seed, epoch, b, rank) alone."""
        lo, hi = self._share(b)
        if order is None:
            images, labels = self.split.images[lo:hi], self.split.labels[lo:hi]
        else:
            index = order[lo:hi]
            images, labels = self.split.images[index], self.split.labels[index]
        images = to_model_input(images, device)
        labels = labels.to(device, non_blocking=True)
        generator = batch_generator(self.seed, epoch, b, self.rank)
        if self.transform is not None:
            positions = torch.arange(lo, hi) if order is None else index
            images = self.transform(images, generator, positions, epoch)
        if self.mix is not None:
            images, labels = self.mix(images, labels, generator)
        return images, labels

    def _prepared_ahead(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches as __iter__ yields them, each prepared on the CPU by one of `workers`
        processes while the model trains on the ones before it. Every batch is a function of
        (seed, epoch, batch, rank), so where it is made changes nothing in it."""
        if self._pool is None:
            self._pool = torch.utils.data.DataLoader(
                _PreparedBatches(self),
                batch_size=None,  # each item is a whole batch already
                sampler=_EpochBatches(self),
                num_workers=self.workers,
                persistent_workers=True,
                prefetch_factor=2,
                worker_init_fn=functools.partial(_own_session, parent=os.getpid()),
                multiprocessing_context="fork",
                pin_memory=self.device.type == "cuda",
            )
        for images, labels in self._pool:
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )


class _EpochBatches:
    """The (epoch, batch) keys of the loader's current epoch from its start batch: read when
    each epoch's iteration begins, so one pool of workers serves every epoch."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.loader.epoch
        return ((epoch, b) for b in range(self.loader.start_batch, len(self.loader)))

    def __len__(self) -> int:
        return len(self.loader) - self.loader.start_batch


class _PreparedBatches(torch.utils.data.Dataset):
    """What a worker process makes: batch (epoch, b) of its copy of the loader, on the CPU."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader
        self.epoch: int | None = None
        self.epoch_order: torch.Tensor | None = None

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = key
        if epoch != self.epoch:
            self.epoch, self.epoch_order = epoch, self.loader.order(epoch)
        return self.loader.batch(epoch, b, self.epoch_order, torch.device("cpu"))


def _own_session(_worker: int, parent: int) -> None:
    """A Ctrl-C or a SIGTERM sent to the run's process group (a terminal, torchrun, a job
    scheduler's kill) is for the main process, which stops the run cleanly (signals.py) and
    then ends its workers: a worker that died first would fail the main process's next batch.
    So each worker leaves the group; it is killed when its parent ends, however it ends."""
    os.setsid()
    die_with_parent(parent)
