"""`model=torchvision`: any classification network of torchvision.models by name.

The number of classes follows the data set. With `weights` (an enum member's name such as
`DEFAULT` or `IMAGENET1K_V1`) every pretrained tensor whose shape fits is loaded and the
rest (the head, for another number of classes; the stem, with `small_input`) stays at its
initialization. Weights come from torch.hub's cache ($TORCH_HOME/hub/checkpoints) or are
downloaded there; without a network they are refused at once, in one line.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from cifar_exp.errors import ConfigError
from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.library import check_known, require_download, small_input_stem
from cifar_exp.registry import option, require

log = logging.getLogger(__name__)
RESNET_FAMILY = ("resnet", "resnext", "wide_resnet")  # the builders of torchvision's ResNet


@dataclass
class TorchvisionOptions(ModelOptions):
    arch: str = option("resnet18", compared=True)  # a torchvision.models.list_models() name
    weights: str | None = option(None, compared=True)  # e.g. DEFAULT, IMAGENET1K_V1; null: none
    # ResNet family only: a 3x3 stride-1 first convolution and no max-pool (CIFAR-sized input).
    small_input: bool = option(False, compared=True)

    def check(self) -> None:
        super().check()
        import torchvision  # seconds to import: only where a torchvision network is built

        check_known(
            self.arch,
            torchvision.models.list_models(module=torchvision.models),
            "torchvision.models.list_models()",
        )
        resnet = self.arch.startswith(RESNET_FAMILY)
        family = "torchvision's ResNet family (resnet*, resnext*, wide_resnet*)"
        require(resnet or not self.small_input, "small_input", f"false outside {family}", True)

    def without_pretrained(self) -> TorchvisionOptions:
        return dataclasses.replace(self, weights=None)


def weights_file(weights: Any) -> Path:
    """Where torch.hub caches (or would cache) `weights` (a torchvision WeightsEnum member)."""
    name = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def pretrained_state(arch: str, name: str) -> dict[str, torch.Tensor]:
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    try:
        weights = enum[name]
    except KeyError:
        choices = ", ".join(enum.__members__)
        message = f"model.weights must be one of {choices} for {arch}, got {name!r}"
        raise ConfigError(message) from None
    cached = weights_file(weights)
    if not cached.is_file():
        fetch = f"download {weights.url} elsewhere and put it there, or set model.weights=null"
        require_download(f"model.weights={name}", cached, urlparse(weights.url).netloc, fetch)
    return weights.get_state_dict(progress=False)


def load_fitting(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the tensors of `state` whose names and shapes fit `model`; log the rest."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    left = sorted(set(own) - set(fitting))
    if left:
        log.info("pretrained weights loaded but for %d tensors (%s)", len(left), ", ".join(left))


@MODELS.register("torchvision", TorchvisionOptions)
def torchvision_model(options: TorchvisionOptions) -> nn.Module:
    import torchvision

    model = torchvision.models.get_model(options.arch, num_classes=options.num_classes)
    if options.small_input:
        small_input_stem(model)
    if options.weights is not None:
        load_fitting(model, pretrained_state(options.arch, options.weights))
    return model
