"""AutoAugment, RandAugment, TrivialAugment, Cutout, MixUp and CutMix: what each does to a
batch, that every draw is a function of (seed, epoch, image position or batch), that a run
interrupted mid-epoch resumes bitwise, and the errors for values that cannot work."""

import re

import pytest
import torch
from torchvision.transforms import v2

from cifar_exp.datasets import Split
from cifar_exp.datasets.augment import (
    BatchAugment,
    BatchMix,
    PerImagePolicy,
    build_mix,
    build_transforms,
    cutout,
    image_seed,
    policy_transform,
)
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import ConfigError
from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.runtime.signals import Interrupted
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.interrupt import fit
from helpers.overrides import TINY

POLICY_OPTIONS = {"policy": "none", "num_ops": 2, "magnitude": 9}
PLAIN = {"crop_padding": 0, "flip": False, "normalize": False}


def uint8_split(n=32, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    return Split(images, torch.randint(0, 10, (n,), generator=gen))


def as_float(split):
    return split.images.float() / 255


@pytest.mark.parametrize("name", ["autoaugment", "randaugment", "trivialaugment"])
def test_a_policy_is_torchvisions_applied_per_image_with_its_own_seed(name):
    split = uint8_split(16)
    policy = policy_transform({**POLICY_OPTIONS, "policy": name}, seed=7)
    rng_before = torch.get_rng_state()
    out = policy(as_float(split), torch.arange(16), epoch=3)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the run's own draws are untouched
    reference = {
        "autoaugment": v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        "randaugment": v2.RandAugment(num_ops=2, magnitude=9),
        "trivialaugment": v2.TrivialAugmentWide(),
    }[name]
    for position, image in enumerate(split.images):
        torch.manual_seed(image_seed(7, 3, position))
        assert torch.equal(out[position], reference(image).float() / 255)
    changed = [not torch.equal(o, i) for o, i in zip(out, as_float(split), strict=True)]
    assert sum(changed) >= 8  # most images are changed (some ops are identities)


@pytest.mark.parametrize("name", ["autoaugment", "randaugment", "trivialaugment"])
def test_a_policy_draws_from_seed_epoch_and_position_only(name):
    split = uint8_split(16)
    images, positions = as_float(split), torch.arange(100, 116)
    policy = policy_transform({**POLICY_OPTIONS, "policy": name}, seed=0)
    out = policy(images, positions, epoch=1)
    # The same images at the same positions in another order or batch: the same results.
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(policy(images[order], positions[order], epoch=1), out[order])
    assert torch.equal(policy(images[4:9], positions[4:9], epoch=1), out[4:9])
    assert not torch.equal(policy(images, positions, epoch=2), out)
    assert not torch.equal(policy(images, positions + 1, epoch=1), out)
    other_seed = policy_transform({**POLICY_OPTIONS, "policy": name}, seed=1)
    assert not torch.equal(other_seed(images, positions, epoch=1), out)


def test_policies_give_each_process_the_images_one_process_would():
    """Under torchrun each rank augments its share: per-image seeds make the shares of a
    policy-only augmentation add up bitwise to one process's batches."""
    split = uint8_split(40)
    transform, _ = build_transforms({**PLAIN, **POLICY_OPTIONS, "policy": "trivialaugment"}, split)

    def batches(rank, world):
        loader = BatchLoader(
            split,
            16,
            torch.device("cpu"),
            True,
            3,
            rank=rank,
            world_size=world,
            transform=transform,
        )
        loader.set_epoch(2)
        return [x for x, _ in loader]

    shares = zip(batches(0, 2), batches(1, 2), strict=True)
    assert all(
        torch.equal(torch.cat([a, b]), x) for (a, b), x in zip(shares, batches(0, 1), strict=True)
    )


def zeroed_box(image):
    """The (rows, cols) ranges of the zeroed pixels of an image with no zeros of its own,
    checking that they are one rectangle, zero in every channel."""
    zero = image == 0
    assert torch.equal(zero, zero[:1].expand_as(zero))  # the same pixels in every channel
    rows = zero[0].any(1).nonzero().flatten().tolist()
    cols = zero[0].any(0).nonzero().flatten().tolist()
    assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
    box = torch.zeros_like(zero[0])
    box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    assert torch.equal(zero[0], box)
    return range(rows[0], rows[-1] + 1), range(cols[0], cols[-1] + 1)


@pytest.mark.parametrize("side", [8, 5, 32])
def test_cutout_zeroes_one_square_per_image_clipped_at_the_border(side):
    images = torch.rand(200, 3, 16, 20) + 0.5  # no pixel is 0
    out = cutout(images, side, torch.Generator().manual_seed(0))
    whole = 0
    for o, i in zip(out, images, strict=True):
        rows, cols = zeroed_box(o)
        assert torch.equal(o[o != 0], i[o != 0])  # nothing else changed
        # Each side is `side` long, or shorter only where it meets the image's border.
        for span, size in ((rows, 16), (cols, 20)):
            assert len(span) == side or (span[0] == 0 or span[-1] == size - 1)
            assert len(span) <= side
        whole += len(rows) == len(cols) == side
    assert whole > 0 or side > 16  # some squares lie wholly inside
    again = cutout(images, side, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)
    assert not torch.equal(cutout(images, side, torch.Generator().manual_seed(1)), out)


def test_cutout_follows_normalization_and_resumes_by_batch():
    split = uint8_split(40)
    options = {**PLAIN, "normalize": True, "mean": [0.5] * 3, "std": [0.25] * 3, "cutout": 8}
    transform, eval_transform = build_transforms(options, split)
    assert eval_transform.cutout == 0  # evaluation never cuts

    def epoch(number, start_batch=0):
        loader = BatchLoader(split, 16, torch.device("cpu"), True, 0, transform=transform)
        loader.set_epoch(number, start_batch)
        return [x for x, _ in loader]

    first = epoch(1)
    # Zero in normalized units (the mean colour), as the paper's code: one box per image.
    for x in first:
        assert ((x == 0).flatten(1).sum(1) > 0).all()
    assert all(torch.equal(a, b) for a, b in zip(first[1:], epoch(1, start_batch=1), strict=True))
    assert not torch.equal(epoch(2)[0], first[0])


def test_mixup_blends_each_image_with_its_neighbour_and_its_targets_sum_to_one():
    images = torch.rand(8, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    mix = BatchMix(10, mixup_alpha=0.4)
    out, targets = mix(images, labels, torch.Generator().manual_seed(0))
    assert targets.shape == (8, 10)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    ratio = targets[0, 0].item()
    assert 0 < ratio < 1 and targets[0, 7].item() == pytest.approx(1 - ratio)
    assert torch.allclose(out, images * ratio + images.roll(1, 0) * (1 - ratio))
    again = mix(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], targets)
    ratios = {
        mix(images, labels, torch.Generator().manual_seed(s))[1][0, 0].item() for s in range(5)
    }
    assert len(ratios) == 5


def test_cutmix_pastes_one_box_of_the_neighbour_and_weighs_targets_by_its_area():
    images = torch.rand(8, 3, 16, 16)
    labels = torch.arange(8)
    out, targets = BatchMix(8, cutmix_alpha=1.0)(images, labels, torch.Generator().manual_seed(3))
    other = images.roll(1, 0)
    pasted = (out == other) & (out != images)
    assert torch.equal(out[~pasted], images[~pasted])
    box = pasted[:, 0].any(0)  # the same box in every image
    assert torch.equal(pasted, box.expand_as(pasted))
    kept = 1 - box.sum().item() / box.numel()
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert targets[1, 1].item() == pytest.approx(kept) and targets[1, 0].item() == pytest.approx(
        1 - kept
    )


def test_mix_probability_and_switch_follow_timms_convention():
    images, labels = torch.rand(4, 3, 8, 8), torch.arange(4)
    out, targets = BatchMix(4, 0.4, 1.0, mix_prob=0.0)(images, labels, torch.Generator())
    assert torch.equal(out, images) and torch.equal(targets, torch.eye(4))  # one-hot, unmixed
    kinds = set()
    for seed in range(20):
        out, _ = BatchMix(4, 0.4, 1.0)(images, labels, torch.Generator().manual_seed(seed))
        kinds.add("cutmix" if ((out == images) | (out == images.roll(1, 0))).all() else "mixup")
    assert kinds == {"cutmix", "mixup"}
    assert build_mix({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, 10) is None


def test_soft_targets_train_with_label_smoothing_and_count_the_dominant_label():
    from cifar_exp.training.engine import Progress

    progress = Progress(torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    soft = torch.tensor([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    loss = torch.nn.functional.cross_entropy(logits, soft, label_smoothing=0.1)
    progress.count(loss, logits, soft)
    assert progress.correct.item() == 1  # only the first argmax is the dominant label


@pytest.mark.parametrize(
    "options",
    [
        ["augment.policy=autoaugment"],
        ["augment.policy=randaugment", "augment.num_ops=3", "augment.magnitude=12"],
        ["augment.policy=trivialaugment", "augment=standard"],
        ["augment.cutout=16", "augment.normalize=true"],
        ["augment.mixup_alpha=0.4", "trainer.label_smoothing=0.1"],
        ["augment.cutmix_alpha=1.0", "augment.mixup_alpha=0.2", "augment.mix_prob=0.8"],
    ],
)
def test_interrupted_mid_epoch_resumes_bitwise(compose, tmp_path, options):
    cfg = compose([*TINY, "trainer.epochs=2", *options])
    fit(cfg, tmp_path / "ref")
    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "run", stop_at=11)  # the 3rd of epoch 2's 8 steps
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["batch"]) == (1, 3)
    fit(cfg, tmp_path / "run", checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    assert_same_tensorboard(tmp_path / "ref", tmp_path / "run")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["augment.policy=autoaugmnt"], "augment.policy must be one of none, autoaugment, rand"),
        (["augment.mixup_alpha=-0.2"], "augment.mixup_alpha must be >= 0 (0 = off), got -0.2"),
        (["augment.cutmix_alpha=-1"], "augment.cutmix_alpha must be >= 0 (0 = off), got -1.0"),
        (["augment.cutout=-4"], "augment.cutout must be >= 0 (0 = off), got -4"),
        (["augment.magnitude=31"], "augment.magnitude must be in [0, 30], got 31"),
        (["augment.num_ops=0"], "augment.num_ops must be >= 1, got 0"),
        (["augment.mix_prob=1.5"], "augment.mix_prob must be in [0, 1], got 1.5"),
        (["augment.switch_prob=-0.1"], "augment.switch_prob must be in [0, 1], got -0.1"),
    ],
)
def test_bad_regularizer_values_are_one_line_errors_naming_the_key(compose, overrides, message):
    from cifar_exp.config import validate

    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        validate(compose(overrides))
    assert "\n" not in str(err.value)


def test_cutout_larger_than_the_image_and_unknown_policy_are_refused_when_built():
    split = uint8_split(4)
    with pytest.raises(
        ConfigError, match=r"^augment.cutout=33 must be at most the images' 32 "
    ) as err:
        build_transforms({**PLAIN, "cutout": 33}, split)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="augment.policy must be one of none, autoaugment"):
        policy_transform({**POLICY_OPTIONS, "policy": "cutmix"}, seed=0)


def test_a_policy_without_positions_is_a_clear_error():
    transform = BatchAugment(policy=PerImagePolicy(v2.TrivialAugmentWide(), 0))
    with pytest.raises(ValueError, match="positions in the split"):
        transform(torch.rand(2, 3, 8, 8), torch.Generator())
