"""The seed post's deliberately small ResNet (347,498 parameters for 10 classes)."""

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions


class ResBlk(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut; as in the post, no ReLU after the sum."""

    def __init__(self, ch_in: int, ch_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch_in, ch_out, kernel_size=3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2d(ch_out)
        self.conv2 = nn.Conv2d(ch_out, ch_out, kernel_size=3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm2d(ch_out)
        self.extra = nn.Sequential()
        if ch_out != ch_in:
            self.extra = nn.Sequential(
                nn.Conv2d(ch_in, ch_out, kernel_size=1, stride=1),
                nn.BatchNorm2d(ch_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.extra(x) + out


class SeedResNet(nn.Module):
    """Stem conv 3->16, ResBlk(16,16), ResBlk(16,32) at full 32x32 resolution, linear 32768->10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1),
            nn.BatchNorm2d(16),
        )
        self.blk1 = ResBlk(16, 16)
        self.blk2 = ResBlk(16, 32)
        self.outlayer = nn.Linear(32 * 32 * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.blk2(self.blk1(x))
        return self.outlayer(x.flatten(1))


@MODELS.register("resnet", ModelOptions)
def seed_resnet(options: ModelOptions) -> SeedResNet:
    return SeedResNet(options.num_classes)
