"""He et al. (2016) CIFAR ResNets: three stages of basic blocks at 16/32/64 channels.

Depth 6n+2; shortcuts that change shape are parameter-free (the paper's option A:
stride-2 subsampling and zero-padded channels), giving 0.27M parameters for ResNet-20.
"""

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, WidthOptions


class BasicBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.stride = stride
        self.pad_channels = ch_out - ch_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_channels:
            half = self.pad_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A 3x3 stem without pooling, then stages of `block`s, each stage doubling the width
    and halving the resolution after the first; global average pooling and a linear head."""

    def __init__(
        self,
        block: type[nn.Module],
        stages: int,
        blocks_per_stage: int,
        num_classes: int,
        width: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers = []
        ch_in = width
        for stage in range(stages):
            ch_out = width * 2**stage
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(block(ch_in, ch_out, stride))
                ch_in = ch_out
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(ch_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def cifar_resnet(depth: int, options: WidthOptions) -> ResNet:
    """He et al.'s depth-`depth` network, initialised as in the paper (He init)."""
    model = ResNet(BasicBlock, 3, (depth - 2) // 6, options.num_classes, options.width)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


@MODELS.register("resnet20", WidthOptions)
def resnet20(options: WidthOptions) -> ResNet:
    return cifar_resnet(20, options)


@MODELS.register("resnet56", WidthOptions)
def resnet56(options: WidthOptions) -> ResNet:
    return cifar_resnet(56, options)
