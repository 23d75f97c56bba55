"""Test-time augmentation: score each image together with its mirrored and shifted views.

The modes follow airbench94's levels: `flip` averages the logits of the image and its mirror
image; `flip_translate` gives that average half the weight and the same average for the image
shifted by one pixel up-left and down-right (reflect padding) a quarter each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TTA_MODES = ("none", "flip", "flip_translate")


def _mirror_mean(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return 0.5 * model(images) + 0.5 * model(images.flip(3))


def tta_logits(model: nn.Module, images: torch.Tensor, mode: str) -> torch.Tensor:
    """The model's logits for a batch [N, C, H, W] under test-time augmentation `mode`."""
    if mode == "none":
        return model(images)
    if mode == "flip":
        return _mirror_mean(model, images)
    if mode == "flip_translate":
        h, w = images.shape[-2:]
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        up_left = padded[..., :h, :w]
        down_right = padded[..., 2:, 2:]
        shifted = 0.5 * _mirror_mean(model, up_left) + 0.5 * _mirror_mean(model, down_right)
        return 0.5 * _mirror_mean(model, images) + 0.5 * shifted
    raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
