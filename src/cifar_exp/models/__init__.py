"""The networks, one family per module, each registered in `MODELS` by name with its options
(see base.py); importing this package fills the registry."""

from cifar_exp.models import airbench, cifar_resnet, lenet, resnet18, seed_resnet  # noqa: F401
from cifar_exp.models.base import (
    MODELS,
    InitializedFromData,
    ModelOptions,
    WidthOptions,
    initialize_from_data,
)

__all__ = ["MODELS", "InitializedFromData", "ModelOptions", "WidthOptions", "initialize_from_data"]
