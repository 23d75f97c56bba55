"""augment.workers: training batches prepared ahead in worker processes are the batches the
training loop would make itself, a run with them stops cleanly on a Ctrl-C sent to its
whole process group, and resumes to the run without them, bitwise."""

import pytest
import torch

from cifar_exp.datasets import Split
from cifar_exp.datasets.augment import build_mix, build_transforms
from cifar_exp.datasets.batches import BatchLoader

# Worker processes, started and stopped: run with the integration tests (pytest -m integration).
pytestmark = pytest.mark.integration

AUGMENT = {
    "crop_padding": 4,
    "flip": True,
    "normalize": True,
    "mean": None,
    "std": None,
    "policy": "randaugment",
    "num_ops": 2,
    "magnitude": 9,
    "cutout": 8,
    "mixup_alpha": 0.2,
}


def loader(split: Split, workers: int) -> BatchLoader:
    train, _ = build_transforms(AUGMENT, split, seed=3)
    mix = build_mix(AUGMENT, 10)
    return BatchLoader(
        split, 32, torch.device("cpu"), True, 3, transform=train, mix=mix, workers=workers
    )


def test_batches_made_by_workers_are_the_loops_own():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (160, 3, 32, 32), generator=gen, dtype=torch.uint8)
    split = Split(images, torch.randint(0, 10, (160,), generator=gen))
    here, ahead = loader(split, 0), loader(split, 2)
    for epoch, start in [(1, 0), (2, 2), (1, 0), (7, 4)]:  # epochs revisited, resumed mid-way
        here.set_epoch(epoch, start)
        ahead.set_epoch(epoch, start)
        mine, theirs = list(here), list(ahead)
        assert len(mine) == len(theirs) == 5 - start
        for (x, y), (x2, y2) in zip(mine, theirs, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    ahead.set_epoch(3)
    next(iter(ahead))  # an epoch left half-way (a stop) leaves the workers usable
    ahead.set_epoch(3)
    here.set_epoch(3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(here, ahead, strict=True))


def test_workers_must_not_be_negative(compose):
    from cifar_exp.config import validate
    from cifar_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^augment.workers must be >= 0 \(0 = none\), got -1$"):
        validate(compose(["augment.workers=-1"]))
