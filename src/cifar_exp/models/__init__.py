"""Model registry. Each model family registers its networks, with their options, where they
are defined."""

from dataclasses import dataclass

from cifar_exp.registry import Options, Registry, require

MODELS = Registry("model")


@dataclass
class ModelOptions(Options):
    num_classes: int | None = 10  # null only while composing: the data set fills it in

    def check(self) -> None:
        ok = self.num_classes is None or self.num_classes >= 2
        require(ok, "num_classes", ">= 2", self.num_classes)


@dataclass
class WidthOptions(ModelOptions):
    width: int = 16  # channels of the first stage

    def check(self) -> None:
        super().check()
        require(self.width >= 1, "width", ">= 1", self.width)


# Importing the families fills the registry.
from cifar_exp.models import cifar_resnet, lenet, resnet18, seed_resnet  # noqa: E402, F401

__all__ = ["MODELS", "ModelOptions", "WidthOptions"]
