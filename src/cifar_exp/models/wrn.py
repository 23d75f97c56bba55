"""Wide residual networks (Zagoruyko & Komodakis 2016, arXiv 1605.07146).

A 3x3 stem of 16 channels, three groups of (depth - 4) / 6 pre-activation basic blocks at
16k, 32k and 64k channels (k = widen_factor), the second and third starting with stride 2,
BatchNorm-ReLU, global average pooling and a linear head. Dropout sits between a block's two
convolutions; a 1x1 convolution is the shortcut where the shape changes. At 10 classes:
WRN-28-10 36,479,194 parameters, WRN-16-8 10,961,370, WRN-40-4 8,949,210 (the paper's
Table 1: 36.5M, 11.0M, 8.9M).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.init import he_init
from cifar_exp.registry import option, require


@dataclass
class WideResNetOptions(ModelOptions):
    depth: int = option(28, compared=True)  # 6n + 4: n blocks in each of the three groups
    widen_factor: int = option(10, compared=True)  # k: the groups' widths are 16k, 32k, 64k
    dropout: float = 0.0  # between a block's convolutions; the paper uses 0.3 on CIFAR

    def check(self) -> None:
        super().check()
        ok = self.depth >= 10 and (self.depth - 4) % 6 == 0
        require(ok, "depth", "6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...)", self.depth)
        require(self.widen_factor >= 1, "widen_factor", ">= 1", self.widen_factor)
        require(0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3, plus the input (or its 1x1 projection)."""

    def __init__(self, ch_in: int, ch_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(ch_in)
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or ch_in != ch_out:
            self.shortcut = nn.Conv2d(ch_in, ch_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        # A projection shortcut reads the activated input, as in the authors' code.
        skip = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + skip


class WideResNet(nn.Module):
    def __init__(self, options: WideResNetOptions) -> None:
        super().__init__()
        blocks = (options.depth - 4) // 6
        widths = [16 * options.widen_factor * 2**group for group in range(3)]
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        ch_in = 16
        for group, ch_out in enumerate(widths):
            for index in range(blocks):
                stride = 2 if group > 0 and index == 0 else 1
                layers.append(WideBlock(ch_in, ch_out, stride, options.dropout))
                ch_in = ch_out
        self.groups = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(ch_in)
        self.fc = nn.Linear(ch_in, options.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.groups(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@MODELS.register("wrn", WideResNetOptions)
def wrn(options: WideResNetOptions) -> WideResNet:
    return he_init(WideResNet(options))
