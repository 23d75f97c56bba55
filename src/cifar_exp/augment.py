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

from cifar_exp.datasets.base import Split
from cifar_exp.errors import ConfigError

log = logging.getLogger(__name__)


FLIP_MODES = ("random", "alternate")


def alternation_bits(num_images: int, seed: int) -> torch.Tensor:
    """One fixed random bit per image of the training split: whether it is flipped on even
    epochs under `flip_mode=alternate` (odd epochs flip the others)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (num_images,), generator=gen, dtype=torch.bool)


class BatchAugment:
    """Random crop of the padded image (zero padding by `crop_padding`, or reflect padding by
    `translate` as airbench does), horizontal flip, then normalization.

    `flip_mode="random"` flips each image with probability 1/2 each epoch. `"alternate"`
    (airbench's scheme) flips a fixed random half of the images (`flip_bits`, indexed by the
    image's position in the split) on even epochs and exactly the other half on odd ones, so
    consecutive epochs always see both orientations of every image.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        flip: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        translate: int = 0,
        flip_bits: torch.Tensor | None = None,
    ) -> None:
        if crop_padding and translate:
            raise ConfigError(
                f"augment.crop_padding={crop_padding} and augment.translate={translate} are two "
                "kinds of random crop; set one of them to 0"
            )
        self.pad = crop_padding or translate
        self.pad_mode = "reflect" if translate else "constant"
        self.flip = flip
        self.flip_bits = flip_bits
        self.mean = None if mean is None else torch.tensor(mean).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(1, 3, 1, 1)

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        index: torch.Tensor | None = None,
        epoch: int = 0,
    ) -> torch.Tensor:
        """`index`: the images' positions in the split and `epoch`, which alternating flips
        need (BatchLoader passes both)."""
        # Random flips crop too (by 0 pixels without padding): the offsets drawn first keep
        # the flips of a flip-only config what they were before translate existed.
        if self.pad or self.flip_bits is None and self.flip:
            images = self.crop(images, generator)
        if self.flip:
            images = torch.where(
                self.flip_mask(images, generator, index, epoch), images.flip(3), images
            )
        if self.mean is not None:
            if self.mean.device != images.device:
                self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
            images = (images - self.mean) / self.std
        return images

    def crop(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image's crop is one window of a strided view of the padded batch: one gather."""
        n, _, h, w = images.shape
        pad = self.pad
        top = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        left = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        padded = F.pad(images, (pad, pad, pad, pad), mode=self.pad_mode) if pad else images
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # [n, c, 2p+1, 2p+1, h, w], a view
        return windows[torch.arange(n, device=images.device), :, top, left]

    def flip_mask(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        index: torch.Tensor | None,
        epoch: int,
    ) -> torch.Tensor:
        """Which images of the batch to mirror, as a [n, 1, 1, 1] bool tensor on their device."""
        n = len(images)
        if self.flip_bits is None:
            flipped = torch.rand(n, generator=generator) < 0.5
        else:
            if index is None:
                raise ValueError("alternating flips need the images' positions in the split")
            if self.flip_bits.device != index.device:  # once: no host sync per batch
                self.flip_bits = self.flip_bits.to(index.device)
            flipped = self.flip_bits[index] ^ bool(epoch % 2)
        return flipped.to(images.device).view(n, 1, 1, 1)


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


def normalization(
    options: dict[str, Any], train: Split
) -> tuple[list[float], list[float]] | tuple[None, None]:
    """The per-channel mean and std the augment config normalizes with: its own, or the
    training split's where they are null; (None, None) when it does not normalize."""
    if not options["normalize"]:
        return None, None
    mean, std = options.get("mean"), options.get("std")
    if mean is None or std is None:
        computed = channel_stats(train)
        mean = computed[0] if mean is None else mean
        std = computed[1] if std is None else std
        log.info(
            "normalizing with the training split's mean %s and std %s",
            [round(v, 4) for v in mean],
            [round(v, 4) for v in std],
        )
    return list(mean), list(std)


def build_transforms(
    options: dict[str, Any], train: Split, seed: int = 0
) -> tuple[BatchAugment, BatchAugment | None]:
    """(train transform, eval transform) for the augment config (see `normalization` for
    null statistics). `seed` (the run's) draws which half of the images alternating flips
    mirror first."""
    mean, std = normalization(options, train)
    translate = options.get("translate", 0)
    if translate >= min(train.images.shape[-2:]):
        raise ConfigError(
            f"augment.translate={translate} must be smaller than the images' "
            f"{min(train.images.shape[-2:])} pixels (reflect padding mirrors the image's own "
            "pixels); choose a smaller augment.translate"
        )
    alternate = options["flip"] and options.get("flip_mode", "random") == "alternate"
    flip_bits = alternation_bits(len(train), seed) if alternate else None
    train_transform = BatchAugment(
        options["crop_padding"], options["flip"], mean, std, translate, flip_bits
    )
    return train_transform, eval_transform({**options, "mean": mean, "std": std})
