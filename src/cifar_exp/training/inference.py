"""A trained model read back from its checkpoint, for `cifar_exp.eval` and `cifar_exp.predict`."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cifar_exp.errors import UserError
from cifar_exp.models import MODELS
from cifar_exp.records.checkpoint import find_checkpoint, load_checkpoint, load_states
from cifar_exp.training.resume import saved_config

log = logging.getLogger("cifar_exp")


def required(cfg: DictConfig, key: str, example: str) -> Any:
    """The value of a key that has no default, or one line saying how to give it."""
    if OmegaConf.is_missing(cfg, key):
        raise UserError(f"{key} is required: {example}")
    return cfg[key]


def load_trained(spec: str, device: torch.device) -> tuple[nn.Module, DictConfig, dict[str, Any]]:
    """The model of a checkpoint (in eval mode on `device`), its run config and the state."""
    path = find_checkpoint(spec)
    state = load_checkpoint(path)
    run_cfg = saved_config(state["config"], str(path))
    model = MODELS.build(MODELS.options(run_cfg.model).without_pretrained())
    load_states(state, {"model": model}, path)
    log.info("checkpoint %s: %s at epoch %s", path, run_cfg.model.name, state["progress"]["epoch"])
    return model.to(device).eval(), run_cfg, state
