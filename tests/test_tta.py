"""Test-time augmentation (tta.py): the logits it averages, and its use in evaluation."""

import pytest
import torch
from torch import nn

from cifar_exp.components.tta import tta_logits
from cifar_exp.datasets import Split
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.training.engine import evaluate


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def mirror_invariant_net() -> nn.Module:
    """Global average pooling first: the mirror image gives the same logits."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5)).eval()


@torch.no_grad()
def test_flip_averages_the_logits_of_the_image_and_its_mirror():
    model, x = conv_net(), torch.rand(4, 3, 8, 8)
    expected = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(tta_logits(model, x, "flip"), expected, atol=1e-6)
    assert not torch.allclose(tta_logits(model, x, "none"), expected, atol=1e-3)
    assert torch.equal(tta_logits(model, x, "none"), model(x))


@torch.no_grad()
def test_flip_translate_weights_the_shifted_views_as_airbench():
    model, x = conv_net(), torch.rand(4, 3, 8, 8)
    # One-pixel shifts with reflection, by index: up-left reads rows/columns 1, 0, 1, ..., 6;
    # down-right reads 1, 2, ..., 7, 6.
    up_left_index = torch.tensor([1, 0, 1, 2, 3, 4, 5, 6])
    down_right_index = torch.tensor([1, 2, 3, 4, 5, 6, 7, 6])
    up_left = x[:, :, up_left_index][:, :, :, up_left_index]
    down_right = x[:, :, down_right_index][:, :, :, down_right_index]

    def mirrored(v):
        return (model(v) + model(v.flip(3))) / 2

    expected = mirrored(x) / 2 + mirrored(up_left) / 4 + mirrored(down_right) / 4
    assert torch.allclose(tta_logits(model, x, "flip_translate"), expected, atol=1e-6)


@torch.no_grad()
def test_a_mirror_invariant_model_scores_the_same_with_and_without_flip():
    model, x = mirror_invariant_net(), torch.rand(4, 3, 8, 8)
    assert torch.allclose(tta_logits(model, x, "flip"), model(x), atol=1e-6)
    split = Split(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), torch.arange(40) % 5)
    loader = BatchLoader(split, 16, torch.device("cpu"))
    plain, flipped = evaluate(model, loader), evaluate(model, loader, tta="flip")
    assert flipped["acc"] == plain["acc"]
    assert flipped["loss"] == pytest.approx(plain["loss"], rel=1e-6)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="tta must be one of none, flip, flip_translate"):
        tta_logits(conv_net(), torch.rand(1, 3, 8, 8), "mirror")
