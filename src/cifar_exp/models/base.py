"""What every model shares: the registry it joins, its options' base, and the protocol of a
data-dependent initialization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from cifar_exp.registry import Options, Registry, option, require

MODELS = Registry("model")


@dataclass
class ModelOptions(Options):
    """Base of every model's options: the number of classes it predicts."""

    num_classes: int | None = 10  # null only while composing: the data set fills it in

    def check(self) -> None:
        ok = self.num_classes is None or self.num_classes >= 2
        require(ok, "num_classes", ">= 2", self.num_classes)

    def without_pretrained(self) -> ModelOptions:
        """The same network, its pretrained weights not fetched: for a model whose weights a
        checkpoint brings (a resumed run, eval, predict), so that needs no network."""
        return self


@dataclass
class WidthOptions(ModelOptions):
    """The options of a model whose size is set by the channels of its first stage."""

    width: int = option(16, compared=True)  # channels of the first stage

    def check(self) -> None:
        super().check()
        require(self.width >= 1, "width", ">= 1", self.width)


@runtime_checkable
class InitializedFromData(Protocol):
    """A model with a data-dependent initialization step (e.g. airbench's whitening)."""

    def init_from_data(self, images: torch.Tensor) -> None: ...


@runtime_checkable
class EpochAware(Protocol):
    """A model whose training changes with the epoch (airbench's whitening bias trains in
    the first epochs only). The trainer calls `set_epoch` as each epoch starts, a resumed
    one too, so what it sets is a function of the epoch alone."""

    def set_epoch(self, epoch: int) -> None: ...


def start_epoch(model: nn.Module, epoch: int) -> None:
    """Tell `model` (the bare one) that epoch `epoch` (from 1) starts, if it wants to know."""
    if isinstance(model, EpochAware):
        model.set_epoch(epoch)


def initialize_from_data(model: nn.Module, images: torch.Tensor) -> bool:
    """Run `model`'s data-dependent initialization if it has one; whether it had.

    Call it once, on the bare model (not a wrapped or compiled one), before training on a
    fresh start only: a resumed run loads these weights from its checkpoint. `images` are
    training images as the model sees them (normalized floats [N, C, H, W]).
    """
    if not isinstance(model, InitializedFromData):
        return False
    model.init_from_data(images)
    return True
