"""`dataset=synthetic`: learnable random images made in memory, no files."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cifar_exp.datasets.base import DATASETS, DataBundle, DatasetOptions, Split
from cifar_exp.registry import require


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

    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def known_classes(self) -> int:
        return 10 if self.num_classes is None else self.num_classes


@DATASETS.register("synthetic", SyntheticOptions)
def synthetic(o: SyntheticOptions) -> DataBundle:
    """Each class is a random pattern; its images are noisy copies of it, so it is learnable."""
    num_classes = o.known_classes()
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
