"""He initialization, shared by the CIFAR families that train from scratch."""

from torch import nn


def he_init(model: nn.Module) -> nn.Module:
    """Convolutions from He et al.'s normal (fan-out, ReLU gain), BatchNorm at scale one and
    shift zero, linear biases at zero: the initialization the WRN and DenseNet papers use."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    return model
