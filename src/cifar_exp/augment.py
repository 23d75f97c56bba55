"""Augmentation and normalization of whole batches as tensor ops, on the batch's device.

`BatchAugment` is a BatchLoader transform: it takes a float batch in [0, 1] and the epoch's
generator, so the same (seed, epoch) always gives the same crops and flips. The random
numbers are drawn on the CPU, which keeps them identical whether the batch is on CPU or GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cifar_exp.data import Split

log = logging.getLogger(__name__)


class BatchAugment:
    """Random crop of the zero-padded image, random horizontal flip, then normalization."""

    def __init__(
        self,
        crop_padding: int = 0,
        flip: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.crop_padding = crop_padding
        self.flip = flip
        self.mean = None if mean is None else torch.tensor(mean).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop_padding or self.flip:
            images = self.crop_and_flip(images, generator)
        if self.mean is not None:
            if self.mean.device != images.device:
                self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
            images = (images - self.mean) / self.std
        return images

    def crop_and_flip(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image's crop is one window of a strided view of the padded batch: one gather."""
        n, _, h, w = images.shape
        pad = self.crop_padding
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # [n, c, 2p+1, 2p+1, h, w], a view
        images = windows[torch.arange(n, device=images.device), :, top, left]
        if self.flip:
            flipped = (torch.rand(n, generator=generator) < 0.5).to(images.device)
            images = torch.where(flipped.view(n, 1, 1, 1), images.flip(3), images)
        return images


def channel_stats(split: Split, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a uint8 split, in [0, 1] units (chunked: bounded memory)."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(split), chunk):
        x = split.images[start : start + chunk].to(torch.float64).div_(255)
        total += x.sum(dim=(0, 2, 3)).cpu()
        squares += x.square().sum(dim=(0, 2, 3)).cpu()
    count = len(split) * split.images.shape[2] * split.images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


def eval_transform(options: dict[str, Any]) -> BatchAugment | None:
    """What evaluation and prediction apply for an augment config whose statistics are
    filled in (as a trained run's stored config is): its normalization, nothing random."""
    if not options.get("normalize"):
        return None
    return BatchAugment(mean=options["mean"], std=options["std"])


def build_transforms(
    options: dict[str, Any], train: Split
) -> tuple[BatchAugment, BatchAugment | None]:
    """(train transform, eval transform) for the augment config; fills in mean/std if null."""
    mean, std = options.get("mean"), options.get("std")
    if options["normalize"]:
        if mean is None or std is None:
            computed = channel_stats(train)
            mean = computed[0] if mean is None else mean
            std = computed[1] if std is None else std
            log.info(
                "normalizing with the training split's mean %s and std %s",
                [round(v, 4) for v in mean],
                [round(v, 4) for v in std],
            )
        options["mean"], options["std"] = mean, std
    else:
        mean = std = None
    train_transform = BatchAugment(options["crop_padding"], options["flip"], mean, std)
    return train_transform, eval_transform(options)
