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
from cifar_exp.models.wrn import WideBlock  # the same pre-activation block, without dropout
from cifar_exp.registry import option


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
                layers.append(WideBlock(ch_in, ch_out, stride, dropout=0.0))
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
