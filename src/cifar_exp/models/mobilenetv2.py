"""MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381) in its CIFAR form.

The paper's inverted residual blocks (1x1 expansion, 3x3 depthwise, linear 1x1 projection;
the input added back where stride is 1 and the channels match), with the two changes of
kuangliu/pytorch-cifar for 32x32 images: the stem and the first 24-channel stage have
stride 1 instead of 2, so the last maps are 4x4 instead of 1x1. kuangliu also gives every
stride-1 block whose channels change a 1x1-conv shortcut (2,296,922 parameters); here those
blocks have none, as in the paper: 2,236,682 parameters at width_mult 1 and 10 classes.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.init import he_init
from cifar_exp.registry import option, require

# (expansion, output channels, blocks, stride of the first block) for each stage.
STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet network
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
STEM = 32
LAST = 1280
ROUND_TO = 8  # channel counts are multiples of this, as in the paper's width multiplier


@dataclass
class MobileNetV2Options(ModelOptions):
    width_mult: float = option(1.0, compared=True)  # scales every layer's channels

    def check(self) -> None:
        super().check()
        require(self.width_mult > 0, "width_mult", "> 0", self.width_mult)


def scaled(channels: int, width_mult: float) -> int:
    """`channels` x `width_mult` rounded to the nearest multiple of 8, never below 8 nor
    more than 10% under the exact product (the paper's reference rounding)."""
    exact = channels * width_mult
    rounded = max(ROUND_TO, int(exact + ROUND_TO / 2) // ROUND_TO * ROUND_TO)
    return rounded + ROUND_TO if rounded < 0.9 * exact else rounded


def conv_bn(ch_in: int, ch_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list:
    conv = nn.Conv2d(ch_in, ch_out, kernel, stride, kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(ch_out)]


class InvertedResidual(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = ch_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*conv_bn(ch_in, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, ch_out, 1)  # linear: no activation after the projection
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and ch_in == ch_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, options: MobileNetV2Options) -> None:
        super().__init__()
        mult = options.width_mult
        ch_in = scaled(STEM, mult)
        layers: list[nn.Module] = [*conv_bn(3, ch_in, 3), nn.ReLU6(inplace=True)]
        for expansion, channels, blocks, first_stride in STAGES:
            ch_out = scaled(channels, mult)
            for index in range(blocks):
                stride = first_stride if index == 0 else 1
                layers.append(InvertedResidual(ch_in, ch_out, stride, expansion))
                ch_in = ch_out
        last = scaled(LAST, mult) if mult > 1 else LAST  # the paper keeps 1280 below 1
        layers += [*conv_bn(ch_in, last, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, options.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@MODELS.register("mobilenetv2", MobileNetV2Options)
def mobilenetv2(options: MobileNetV2Options) -> MobileNetV2:
    return he_init(MobileNetV2(options))
