"""Model registry. Each model family registers its networks where they are defined."""

from typing import Any

from torch import nn

from cifar_exp.registry import Registry

MODELS = Registry("model")


def build_model(options: dict[str, Any]) -> nn.Module:
    """The model named by options['name'], built with the rest of the options."""
    options = dict(options)
    return MODELS.build(options.pop("name"), **options)


# Importing the families fills the registry.
from cifar_exp.models import cifar_resnet, lenet, resnet18, seed_resnet  # noqa: E402, F401

__all__ = ["MODELS"]
