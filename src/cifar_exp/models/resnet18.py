"""ResNet-18 in its common CIFAR form: a 3x3 stem without max-pooling, four stages of
basic blocks at 64/128/256/512 channels, 1x1-conv projection shortcuts (11.2M parameters)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, WidthOptions
from cifar_exp.models.cifar_resnet import ResNet


class ProjectionBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or ch_in != ch_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(ch_in, ch_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(ch_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@dataclass
class ResNet18Options(WidthOptions):
    width: int = 64


@MODELS.register("resnet18", ResNet18Options)
def resnet18(options: ResNet18Options) -> ResNet:
    return ResNet(ProjectionBlock, 4, 2, options.num_classes, options.width)
