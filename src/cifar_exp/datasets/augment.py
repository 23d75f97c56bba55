"""Augmentation and normalization of whole batches as tensor ops, on the batch's device.

`BatchAugment` is a BatchLoader transform: it takes a float batch in [0, 1] and the batch's
generator, so the same (seed, epoch) always gives the same crops, flips and cutouts. The
random numbers are drawn on the CPU, which keeps them identical whether the batch is on CPU
or GPU. A torchvision policy (`PerImagePolicy`) runs image by image, each image's draws
seeded by (seed, epoch, its position in the split). `BatchMix` (MixUp, CutMix) mixes the
images and turns the labels into soft targets, drawing from the batch's generator too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from cifar_exp.datasets.base import Split
from cifar_exp.errors import ConfigError

log = logging.getLogger(__name__)


FLIP_MODES = ("random", "alternate")
POLICIES = ("none", "autoaugment", "randaugment", "trivialaugment")


def image_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of one image's policy draws: a function of the image alone, so a resumed
    epoch, another batch size or another process's share draw the same for it."""
    return hash((seed, epoch, position)) & (2**63 - 1)


class PerImagePolicy:
    """A torchvision `transforms.v2` policy applied to each image on its own, on its 8-bit
    pixels (as the policies were defined on PIL images), with torch's CPU random numbers
    seeded by `image_seed` for each image and restored afterwards."""

    def __init__(self, policy: Any, seed: int) -> None:
        self.policy = policy
        self.seed = seed

    def __call__(self, images: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """Float images in [0, 1] that hold 8-bit values (crops and flips keep them so)."""
        pixels = images.mul(255).round_().to(torch.uint8)
        out = torch.empty_like(pixels)
        with torch.random.fork_rng(devices=[]):
            for i, position in enumerate(index.tolist()):
                torch.default_generator.manual_seed(image_seed(self.seed, epoch, position))
                out[i] = self.policy(pixels[i])
        return out.float().div_(255)


def policy_transform(options: dict[str, Any], seed: int) -> PerImagePolicy | None:
    """The per-image policy `augment.policy` names (None for none)."""
    name = options.get("policy", "none")
    if name == "none":
        return None
    from torchvision.transforms import v2  # seconds to import: only where a policy is used

    if name == "autoaugment":
        policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    elif name == "randaugment":
        policy = v2.RandAugment(num_ops=options["num_ops"], magnitude=options["magnitude"])
    elif name == "trivialaugment":
        policy = v2.TrivialAugmentWide()
    else:
        raise ConfigError(f"augment.policy must be one of {', '.join(POLICIES)}, got {name!r}")
    return PerImagePolicy(policy, seed)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one `size` x `size` square per image (DeVries & Taylor 2017): its centre drawn
    anywhere in the image, the square clipped where it crosses the border, as the paper's
    code does (so a square near the border zeroes fewer pixels). Rows [cy - size // 2,
    cy - size // 2 + size): for even sizes the paper's square exactly, for odd ones `size`
    rows (the paper's code zeroes size - 1)."""
    n, _, h, w = images.shape
    top = torch.randint(0, h, (n, 1), generator=generator).to(images.device) - size // 2
    left = torch.randint(0, w, (n, 1), generator=generator).to(images.device) - size // 2
    rows = torch.arange(h, device=images.device).view(1, h)
    cols = torch.arange(w, device=images.device).view(1, w)
    in_rows = (rows >= top) & (rows < top + size)  # [n, h]
    in_cols = (cols >= left) & (cols < left + size)  # [n, w]
    square = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w)
    return images.masked_fill(square, 0)


class BatchMix:
    """MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) of a whole batch, returning
    soft targets (rows that sum to one) in place of the labels.

    timm's convention: a batch is mixed with probability `mix_prob`; with both alphas set,
    it is cut-mixed with probability `switch_prob`, else mixed up. One ratio per batch, drawn
    from Beta(alpha, alpha); each image is mixed with the one before it in the batch (the
    batch rolled by one, as torchvision's MixUp and CutMix do). CutMix's box has area
    (1 - ratio) of the image, its centre anywhere, clipped at the border, and the targets
    take the ratio of the pixels actually kept. Every draw comes from the batch's generator.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
    ) -> None:
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob = mix_prob, switch_prob

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = F.one_hot(labels, self.num_classes).float()
        apply, switch = torch.rand(2, generator=generator).tolist()
        if apply >= self.mix_prob:
            return images, targets
        cut = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or switch < self.switch_prob)
        alpha = self.cutmix_alpha if cut else self.mixup_alpha
        ratio = beta_sample(alpha, generator)
        other = images.roll(1, 0)
        if cut:
            images, ratio = self.paste_box(images, other, ratio, generator)
        else:
            images = images * ratio + other * (1 - ratio)
        return images, targets * ratio + targets.roll(1, 0) * (1 - ratio)

    @staticmethod
    def paste_box(
        images: torch.Tensor, other: torch.Tensor, ratio: float, generator: torch.Generator
    ) -> tuple[torch.Tensor, float]:
        """`images` with a box of `other` pasted in, and the share of pixels kept."""
        h, w = images.shape[-2:]
        side = math.sqrt(1 - ratio)
        cut_h, cut_w = int(h * side), int(w * side)
        cy, cx = (int(torch.randint(0, size, (), generator=generator)) for size in (h, w))
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        images = images.clone()
        images[:, :, y1:y2, x1:x2] = other[:, :, y1:y2, x1:x2]
        return images, 1 - (y2 - y1) * (x2 - x1) / (h * w)


def beta_sample(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha) from `generator` (torch.distributions draws from the
    global generator, so it runs on a copy of it seeded from `generator`)."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return float(torch.distributions.Beta(alpha, alpha).sample())


def build_mix(options: dict[str, Any], num_classes: int) -> BatchMix | None:
    """The batch mixing the augment config asks for (None: neither alpha set)."""
    mixup, cutmix = options.get("mixup_alpha", 0.0), options.get("cutmix_alpha", 0.0)
    if not (mixup or cutmix):
        return None
    return BatchMix(
        num_classes, mixup, cutmix, options.get("mix_prob", 1.0), options.get("switch_prob", 0.5)
    )


def alternation_bits(num_images: int, seed: int) -> torch.Tensor:
    """One fixed random bit per image of the training split: whether it is flipped on even
    epochs under `flip_mode=alternate` (odd epochs flip the others)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (num_images,), generator=gen, dtype=torch.bool)


class BatchAugment:
    """Random crop of the padded image (zero padding by `crop_padding`, or reflect padding by
    `translate` as airbench does), horizontal flip, a per-image policy (`policy`), then
    normalization, then `cutout` (after normalization, as the paper's code: the square is 0
    in normalized units, the mean colour, when the images are normalized).

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
        policy: PerImagePolicy | None = None,
        cutout: int = 0,
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
        self.policy = policy
        self.cutout = cutout
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
        and policies need (BatchLoader passes both)."""
        # Random flips crop too (by 0 pixels without padding): the offsets drawn first keep
        # the flips of a flip-only config what they were before translate existed.
        if self.pad or self.flip_bits is None and self.flip:
            images = self.crop(images, generator)
        if self.flip:
            images = torch.where(
                self.flip_mask(images, generator, index, epoch), images.flip(3), images
            )
        if self.policy is not None:
            if index is None:
                raise ValueError("a per-image policy needs the images' positions in the split")
            images = self.policy(images, index, epoch)
        if self.mean is not None:
            if self.mean.device != images.device:
                self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
            images = (images - self.mean) / self.std
        if self.cutout:
            images = cutout(images, self.cutout, generator)
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
    mirror first, and seeds the per-image policy's draws."""
    mean, std = normalization(options, train)
    translate = options.get("translate", 0)
    if translate >= min(train.images.shape[-2:]):
        raise ConfigError(
            f"augment.translate={translate} must be smaller than the images' "
            f"{min(train.images.shape[-2:])} pixels (reflect padding mirrors the image's own "
            "pixels); choose a smaller augment.translate"
        )
    side = options.get("cutout", 0)
    if side > min(train.images.shape[-2:]):
        raise ConfigError(
            f"augment.cutout={side} must be at most the images' {min(train.images.shape[-2:])} "
            "pixels (the side of the square it zeroes); choose a smaller augment.cutout"
        )
    alternate = options["flip"] and options.get("flip_mode", "random") == "alternate"
    flip_bits = alternation_bits(len(train), seed) if alternate else None
    train_transform = BatchAugment(
        options["crop_padding"],
        options["flip"],
        mean,
        std,
        translate,
        flip_bits,
        policy_transform(options, seed),
        side,
    )
    return train_transform, eval_transform({**options, "mean": mean, "std": std})
