"""Pre-activation ResNet-18 (He et al. 2016, "Identity mappings in deep residual networks").

The CIFAR form: a 3x3 stem without max-pooling, four stages of two pre-activation basic
blocks (BN-ReLU-conv3x3, twice) at width, 2, 4 and 8 x width channels, a 1x1 projection of
the activated input where the shape changes, and a last BatchNorm-ReLU before the pooling
(which kuangliu/pytorch-cifar leaves out: 1,024 parameters fewer). 11,172,170 parameters
at width 64 and 10 classes.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, WidthOptions
from cifar_exp.models.init import he_init
from cifar_exp.registry import option


class PreActBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(ch_in)
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or ch_in != ch_out:
            self.shortcut = nn.Conv2d(ch_in, ch_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, blocks_per_stage: list[int], num_classes: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        ch_in = width
        for stage, blocks in enumerate(blocks_per_stage):
            ch_out = width * 2**stage
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(PreActBlock(ch_in, ch_out, stride))
                ch_in = ch_out
        self.stages = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(ch_in)
        self.fc = nn.Linear(ch_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stages(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@dataclass
class PreActResNet18Options(WidthOptions):
    width: int = option(64, compared=True)  # channels of the first stage


@MODELS.register("preact_resnet18", PreActResNet18Options)
def preact_resnet18(options: PreActResNet18Options) -> PreActResNet:
    return he_init(PreActResNet([2, 2, 2, 2], options.num_classes, options.width))
