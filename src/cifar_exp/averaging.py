"""Averaged weights: an exponential moving average (EMA) of the model's weights, which
evaluation uses, or Lookahead, which pulls the trained weights to that average as it goes.

`trainer.ema_decay` turns it on; the average is updated every `trainer.ema_every` optimizer
steps, and checkpoints carry it, so a resumed run continues the same average bitwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """EMA of `net`'s parameters and buffers (BatchNorm statistics too): each update moves the
    average a fraction 1 - decay of the way to the current weights. With `lookahead` the
    trained weights are then set to the average (airbench's Lookahead), and evaluation uses
    them; without, evaluation uses the average and training goes on undisturbed."""

    def __init__(self, net: nn.Module, decay: float, every: int, lookahead: bool) -> None:
        self.net = net
        self.every = every
        self.lookahead = lookahead
        self.averaged = AveragedModel(
            net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )

    def update(self, step: int) -> None:
        """Called after every optimizer step; `step` counts them from 1."""
        if step % self.every:
            return
        self.averaged.update_parameters(self.net)
        if self.lookahead:
            with torch.no_grad():
                for trained, averaged in zip(
                    self._tensors(self.net), self._tensors(self.averaged.module), strict=True
                ):
                    trained.copy_(averaged)

    def model_to_evaluate(self) -> nn.Module:
        return self.net if self.lookahead else self.averaged.module

    @staticmethod
    def _tensors(module: nn.Module) -> list[torch.Tensor]:
        return [*module.parameters(), *module.buffers()]

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
