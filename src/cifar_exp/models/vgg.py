"""VGG (Simonyan & Zisserman 2014) in its CIFAR form: the 3x3 convolution stacks of VGG-11,
13, 16 or 19, each stack ending in a 2x2 max-pool (32x32 -> 1x1 after five), and a single
linear head on the 512 channels left in place of the three 4096-wide layers of the ImageNet
network. VGG-16 with BatchNorm: 14,728,266 parameters at 10 classes (kuangliu/pytorch-cifar's
figure); without BatchNorm 14,719,818.
"""

from dataclasses import dataclass

import torch
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.init import he_init
from cifar_exp.registry import option, require

# Convolutions per stack, for each depth; the stacks have 1, 2, 4, 8, 8 x width channels.
CONVS_PER_STACK = {
    11: [1, 1, 2, 2, 2],
    13: [2, 2, 2, 2, 2],
    16: [2, 2, 3, 3, 3],
    19: [2, 2, 4, 4, 4],
}
STACK_WIDTHS = [1, 2, 4, 8, 8]


@dataclass
class VGGOptions(ModelOptions):
    depth: int = option(16, compared=True)  # 11, 13, 16 or 19 weight layers
    batch_norm: bool = option(True, compared=True)  # BatchNorm after every convolution
    width: int = 64  # channels of the first stack (the paper's 64)

    def check(self) -> None:
        super().check()
        depths = ", ".join(str(depth) for depth in CONVS_PER_STACK)
        require(self.depth in CONVS_PER_STACK, "depth", f"one of {depths}", self.depth)
        require(self.width >= 1, "width", ">= 1", self.width)


class VGG(nn.Module):
    def __init__(self, options: VGGOptions) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in = 3
        for convs, scale in zip(CONVS_PER_STACK[options.depth], STACK_WIDTHS, strict=True):
            ch_out = options.width * scale
            for _ in range(convs):
                layers.append(nn.Conv2d(ch_in, ch_out, 3, padding=1))
                if options.batch_norm:
                    layers.append(nn.BatchNorm2d(ch_out))
                layers.append(nn.ReLU(inplace=True))
                ch_in = ch_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ch_in, options.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global pooling makes the head independent of the input size (1x1 at 32x32 already).
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(x.flatten(1))


@MODELS.register("vgg", VGGOptions)
def vgg(options: VGGOptions) -> VGG:
    return he_init(VGG(options))
