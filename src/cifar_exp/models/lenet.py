"""LeNet5 exactly as in the seed post (62,006 parameters for 10 classes)."""

import torch
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions


class LeNet5(nn.Module):
    """Two 5x5 convolutions with max-pooling, then three linear layers.

    As in the post there is no activation after the convolutions; the input must be 32x32.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv_unit = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5, stride=1, padding=0),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(6, 16, kernel_size=5, stride=1, padding=0),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=0),
        )
        self.fc_unit = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_unit(self.conv_unit(x).flatten(1))


@MODELS.register("lenet5", ModelOptions)
def lenet5(options: ModelOptions) -> LeNet5:
    return LeNet5(options.num_classes)
