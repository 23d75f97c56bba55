"""DenseNet-BC (Huang et al. 2017, arXiv 1608.06993) for CIFAR.

A 3x3 stem of 2k channels (k = growth_rate), three dense blocks of (depth - 4) / 6
bottleneck layers (BN-ReLU-conv1x1 to 4k, BN-ReLU-conv3x3 to k, concatenated to the input),
between them transitions that halve the channels (compression 0.5, BN-ReLU-conv1x1) and the
resolution (2x2 average pooling), then BN-ReLU, global average pooling and a linear head.
DenseNet-BC-100 with k=12: 769,162 parameters at 10 classes (the paper's Table 2: 0.8M).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.init import he_init
from cifar_exp.registry import option, require

BOTTLENECK = 4  # the 1x1 convolution's output, in multiples of the growth rate
COMPRESSION = 0.5  # a transition keeps this share of the channels


@dataclass
class DenseNetBCOptions(ModelOptions):
    depth: int = option(100, compared=True)  # 6n + 4: n bottleneck layers per dense block
    growth_rate: int = option(12, compared=True)  # k: channels each layer adds

    def check(self) -> None:
        super().check()
        ok = self.depth >= 10 and (self.depth - 4) % 6 == 0
        require(ok, "depth", "6n + 4 with n >= 1 (40, 100, 190, ...)", self.depth)
        require(self.growth_rate >= 1, "growth_rate", ">= 1", self.growth_rate)


class Bottleneck(nn.Module):
    def __init__(self, ch_in: int, growth_rate: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(ch_in)
        self.conv1 = nn.Conv2d(ch_in, BOTTLENECK * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(BOTTLENECK * growth_rate)
        self.conv2 = nn.Conv2d(BOTTLENECK * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__(
            nn.BatchNorm2d(ch_in),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch_in, ch_out, 1, bias=False),
            nn.AvgPool2d(2),
        )


class DenseNetBC(nn.Module):
    def __init__(self, options: DenseNetBCOptions) -> None:
        super().__init__()
        k = options.growth_rate
        layers_per_block = (options.depth - 4) // 6
        channels = 2 * k
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(layers_per_block):
                layers.append(Bottleneck(channels, k))
                channels += k
            if block < 2:
                compressed = int(channels * COMPRESSION)
                layers.append(Transition(channels, compressed))
                channels = compressed
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, options.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@MODELS.register("densenet_bc", DenseNetBCOptions)
def densenet_bc(options: DenseNetBCOptions) -> DenseNetBC:
    return he_init(DenseNetBC(options))
