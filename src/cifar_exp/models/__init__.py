"""Model registry. Each model family registers its networks where they are defined."""

from cifar_exp.registry import Registry

MODELS = Registry("model")

# Importing the families fills the registry.
from cifar_exp.models import cifar_resnet, lenet, resnet18, seed_resnet  # noqa: E402, F401

__all__ = ["MODELS"]
