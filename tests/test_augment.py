"""Batch augmentation and normalization, the seeded val holdout, and their use in a run."""

import json

import pytest
import torch

from cifar_exp.datasets import Split, load_dataset
from cifar_exp.datasets.augment import BatchAugment, build_transforms, channel_stats, normalization
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import ConfigError
from helpers.cli import output_in_process, run_in_process
from helpers.events import load_events
from helpers.overrides import TINY


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


def window_shifts(out, padded):
    """The (dy, dx) of the one 6x6 window of each padded image that each output image is."""
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
    return shifts


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    images = numbered_images(32)
    out = BatchAugment(crop_padding=2)(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    shifts = window_shifts(out, padded)
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
    assert normalization(options, split) == (pytest.approx(mean), pytest.approx(std))
    train_t, eval_t = build_transforms(options, split)
    assert options["mean"] is None  # its argument is left as it was
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
    acc = load_events(run_dir)
    assert {"val/loss", "val/acc", "test/loss", "test/acc"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("test/acc")] == [2]  # scored once, at the end
    assert [e.step for e in acc.Scalars("val/acc")] == [1, 2]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["val_acc"] == pytest.approx(acc.Scalars("val/acc")[-1].value)
    assert "192 train / 64 val / 128 test images" in (run_dir / "run.log").read_text()
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "crop_padding: 4" in config and "flip: true" in config


def flipped_labels(loader, originals):
    """The labels (= positions) of the images the loader's epoch mirrored."""
    flipped = set()
    for x, y in loader:
        for image, label in zip(x, y.tolist(), strict=True):
            if torch.equal(image, originals[label].flip(2)):
                flipped.add(label)
            else:
                assert torch.equal(image, originals[label])
    return flipped


def test_alternating_flip_mirrors_a_random_half_then_exactly_the_other_half():
    n = 64
    images = torch.randint(0, 256, (n, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    split = Split(images.to(torch.uint8), torch.arange(n))
    originals = images.float() / 255
    options = {"crop_padding": 0, "flip": True, "flip_mode": "alternate", "normalize": False}

    def epoch(number, seed=0, start_batch=0):
        transform, _ = build_transforms(dict(options), split, seed=seed)
        loader = BatchLoader(split, 16, torch.device("cpu"), True, seed, transform=transform)
        loader.set_epoch(number, start_batch)
        return loader

    first, second, third = (flipped_labels(epoch(e), originals) for e in (1, 2, 3))
    assert 16 < len(first) < 48
    assert second == set(range(n)) - first  # exactly the ones not flipped the epoch before
    assert third == first
    assert flipped_labels(epoch(1, seed=1), originals) != first
    # A resumed epoch continues bitwise: the same batches as the tail of the whole epoch.
    whole = [x for x, _ in epoch(2)]
    resumed = [x for x, _ in epoch(2, start_batch=2)]
    assert all(torch.equal(a, b) for a, b in zip(whole[2:], resumed, strict=True))


def test_translate_is_a_window_of_the_reflect_padded_image_within_bounds():
    images = numbered_images(32) + 1  # no pixel is 0, so zero padding would show
    out = BatchAugment(translate=2)(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    shifts = window_shifts(out, padded)  # one window each, within 2 pixels
    assert len(shifts) > 5
    assert (out > 0).all()  # reflected pixels, never zero padding


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["augment=standard", "augment.translate=2"], "augment.translate must be 0 when crop_pad"),
        (["augment.flip_mode=sometimes"], "augment.flip_mode must be one of random, alternate"),
        (["augment.translate=-1"], "augment.translate must be >= 0"),
    ],
)
def test_bad_augment_options_are_refused_while_composing(compose, overrides, message):
    from cifar_exp.config import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose(overrides))


def test_translate_as_large_as_the_image_is_a_clear_error(tmp_path):
    code, output = output_in_process(
        *TINY,
        "augment=airbench",
        "augment.translate=32",
        f"hydra.run.dir={tmp_path / 'r'}",
        cwd=tmp_path,
    )
    output = output
    assert code != 0
    assert "augment.translate=32 must be smaller than the images' 32 pixels" in output
    assert "Traceback" not in output


def test_airbench_preset_trains(compose, tmp_path):
    cfg = compose(["augment=airbench"])
    assert (cfg.augment.translate, cfg.augment.flip, cfg.augment.flip_mode) == (
        2,
        True,
        "alternate",
    )
    assert cfg.augment.crop_padding == 0
    run_dir = tmp_path / "run"
    code, output = output_in_process(
        *TINY, "trainer.epochs=2", "augment=airbench", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert code == 0, output[-3000:]
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "flip_mode: alternate" in config and "translate: 2" in config
