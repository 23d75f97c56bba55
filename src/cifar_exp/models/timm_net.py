"""`model=timm`: any network timm knows by name (an optional extra: pip install -e ".[timm]").

`timm.create_model(arch, pretrained, num_classes, drop_rate, **kwargs)`, the number of
classes from the data set. Pretrained weights come from the Hugging Face cache (or torch.hub's
for the few timm serves by URL) or are downloaded there; without a network they are refused
at once, in one line, before timm would retry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from cifar_exp.errors import ConfigError
from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.models.library import (
    check_known,
    has_resnet_stem,
    require_download,
    small_input_stem,
)
from cifar_exp.registry import option, require

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for, in order


def import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            'model=timm needs the timm package: pip install -e ".[timm]" (or pip install timm)'
        ) from None
    return timm


@dataclass
class TimmOptions(ModelOptions):
    arch: str = option("resnet18", compared=True)  # a timm.list_models() name (tags allowed)
    pretrained: bool = option(False, compared=True)
    drop_rate: float = 0.0  # dropout before the classifier
    # ResNet family only: a 3x3 stride-1 first convolution and no max-pool (CIFAR-sized input).
    small_input: bool = option(False, compared=True)
    kwargs: dict[str, Any] = field(default_factory=dict)  # more create_model keyword arguments

    def check(self) -> None:
        super().check()
        require(0 <= self.drop_rate < 1, "drop_rate", "in [0, 1)", self.drop_rate)
        timm = import_timm()
        check_known(self.arch.split(".")[0], timm.list_models(), "timm.list_models()")

    def without_pretrained(self) -> TimmOptions:
        return dataclasses.replace(self, pretrained=False)


def require_timm_weights(arch: str) -> None:
    """Refuse at once pretrained weights that are neither cached nor downloadable now."""
    import huggingface_hub
    from huggingface_hub import constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"model.pretrained: timm has no pretrained weights for {arch}")
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else HF_WEIGHT_FILES
        if any(isinstance(huggingface_hub.try_to_load_from_cache(repo, n), str) for n in names):
            return
        where = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        fetch = (
            f"run `hf download {repo}` on a machine with a network and copy that folder "
            "here, or set model.pretrained=false"
        )
        require_download("model.pretrained", where, urlparse(constants.ENDPOINT).netloc, fetch)
    else:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg.url).path).name
        if not cached.is_file():
            fetch = f"download {cfg.url} elsewhere and put it there, or set model.pretrained=false"
            require_download("model.pretrained", cached, urlparse(cfg.url).netloc, fetch)


@MODELS.register("timm", TimmOptions)
def timm_model(options: TimmOptions) -> nn.Module:
    timm = import_timm()
    if options.pretrained:
        require_timm_weights(options.arch)
    model = timm.create_model(
        options.arch,
        pretrained=options.pretrained,
        num_classes=options.num_classes,
        drop_rate=options.drop_rate,
        **options.kwargs,
    )
    if options.small_input:
        if not has_resnet_stem(model):
            raise ConfigError(
                f"model.small_input applies to timm's ResNet family (a conv1 stem and a "
                f"max-pool), not {options.arch}"
            )
        small_input_stem(model)
    return model
