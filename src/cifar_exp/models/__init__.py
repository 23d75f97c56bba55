"""The networks, one family per module, each registered in `MODELS` by name with its options
(see base.py); importing this package fills the registry."""

from cifar_exp.models import (  # noqa: F401
    airbench,
    cifar_resnet,
    densenet,
    lenet,
    mobilenetv2,
    preact_resnet,
    resnet18,
    seed_resnet,
    timm_net,
    torchvision_net,
    vgg,
    wrn,
)
from cifar_exp.models.base import (
    MODELS,
    EpochAware,
    InitializedFromData,
    ModelOptions,
    WidthOptions,
    initialize_from_data,
    start_epoch,
)

__all__ = [
    "MODELS",
    "EpochAware",
    "InitializedFromData",
    "ModelOptions",
    "WidthOptions",
    "initialize_from_data",
    "start_epoch",
]
