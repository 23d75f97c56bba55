"""ResNet-18 in its common CIFAR form: a 3x3 stem without max-pooling, four stages of
basic blocks at 64/128/256/512 channels, 1x1-conv projection shortcuts (11.2M parameters)."""

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models import MODELS


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


@MODELS.register("resnet18")
class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers = []
        ch_in = width
        for stage in range(4):
            ch_out = width * 2**stage
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(ProjectionBlock(ch_in, ch_out, stride))
                ch_in = ch_out
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(ch_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
