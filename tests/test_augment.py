"""Batch augmentation and normalization, the seeded val holdout, and their use in a run."""

import json

import pytest
import torch
from conftest import TINY, run_in_process
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_exp.augment import BatchAugment, build_transforms, channel_stats
from cifar_exp.data import BatchLoader, Split, load_dataset
from cifar_exp.errors import ConfigError


def numbered_images(n=4, size=6):
    """Each pixel holds a distinct value, so crops and flips can be traced exactly."""
    base = torch.arange(3 * size * size, dtype=torch.float32).view(1, 3, size, size)
    return base + 1000 * torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)


def test_flip_only_mirrors_about_half_of_the_images():
    images = numbered_images(64)
    out = BatchAugment(flip=True)(images, torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    images = numbered_images(32)
    out = BatchAugment(crop_padding=2)(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    shifts = set()
    for o, p in zip(out, padded, strict=True):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(o, p[:, dy : dy + 6, dx : dx + 6])
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 5  # the offsets vary across the batch


def test_same_seed_same_augmented_batches_on_any_epoch():
    n = 40
    split = Split(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8), torch.arange(n))
    aug = BatchAugment(crop_padding=4, flip=True)

    def epoch(seed, number):
        loader = BatchLoader(split, 16, torch.device("cpu"), shuffle=True, seed=seed, transform=aug)
        loader.set_epoch(number)
        return [(x.clone(), y.clone()) for x, y in loader]

    a, b = epoch(0, 3), epoch(0, 3)
    assert all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    assert not torch.equal(epoch(0, 4)[0][0], a[0][0])
    assert not torch.equal(epoch(1, 3)[0][0], a[0][0])
    # Augmenting does not change which samples an epoch visits, or in what order.
    plain = BatchLoader(split, 16, torch.device("cpu"), shuffle=True, seed=0)
    plain.set_epoch(3)
    assert [y.tolist() for _, y in plain] == [y.tolist() for _, y in a]


def test_normalization_uses_the_training_split_statistics():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 4, 4), generator=gen, dtype=torch.uint8)
    images[:, 0] //= 2  # make the channels differ
    split = Split(images, torch.zeros(50, dtype=torch.int64))
    mean, std = channel_stats(split, chunk=7)
    as_float = images.double() / 255
    assert mean == pytest.approx(as_float.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(as_float.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)

    options = {"crop_padding": 0, "flip": False, "normalize": True, "mean": None, "std": None}
    train_t, eval_t = build_transforms(options, split)
    assert options["mean"] == pytest.approx(mean) and options["std"] == pytest.approx(std)
    out = eval_t(as_float.float(), torch.Generator())
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (out.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4


def test_val_holdout_is_seeded_and_disjoint():
    opts = {"name": "synthetic", "train_size": 100, "test_size": 10, "val_size": 20}
    a = load_dataset({**opts, "split_seed": 0})
    b = load_dataset({**opts, "split_seed": 0})
    c = load_dataset({**opts, "split_seed": 1})
    assert len(a.train) == 80 and len(a.val) == 20
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    full = load_dataset({**opts, "val_size": 0}).train.images.flatten(1)
    rows = {tuple(r.tolist()) for r in full}
    held = {tuple(r.tolist()) for r in a.val.images.flatten(1)}
    kept = {tuple(r.tolist()) for r in a.train.images.flatten(1)}
    assert held | kept == rows and not held & kept
    with pytest.raises(ConfigError, match="dataset.val_size=100 leaves no training images"):
        load_dataset({**opts, "val_size": 100})


def test_on_device_split_is_indexed_where_it_lives():
    split = Split(
        torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2), torch.arange(10)
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = BatchLoader(
        split.to(device), 4, device, shuffle=True, transform=BatchAugment(flip=True)
    )
    labels = torch.cat([y for _, y in loader])
    assert labels.device.type == device.type and sorted(labels.tolist()) == list(range(10))


def test_run_with_val_split_and_standard_augmentation_logs_val_scalars(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["trainer.epochs=2", "dataset.val_size=64", "augment=standard"]
    overrides += ["augment.normalize=true", "dataset.on_device=true", f"hydra.run.dir={run_dir}"]
    assert run_in_process(*TINY, *overrides, cwd=tmp_path) == 0
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"val/loss", "val/acc", "test/loss", "test/acc"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("test/acc")] == [2]  # scored once, at the end
    assert [e.step for e in acc.Scalars("val/acc")] == [1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["val_acc"] == pytest.approx(acc.Scalars("val/acc")[-1].value)
    assert "192 train / 64 val / 128 test images" in (run_dir / "run.log").read_text()
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "crop_padding: 4" in config and "flip: true" in config
