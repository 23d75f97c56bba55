"""Averaged weights: an exponential moving average (EMA) of the model's weights, which
evaluation uses, or Lookahead, which pulls the trained weights to that average as it goes
(airbench's recipe).

`trainer.ema_decay` turns it on. The average starts after `trainer.ema_start_epochs` and is
updated every `trainer.ema_every` optimizer steps; with `trainer.ema_ramp_pow` p > 0 the
decay grows over training as decay * (step / total steps)^p: little averaging while the
weights move fast, strong averaging at the end. Checkpoints carry the average, so a resumed
run continues it bitwise. Lookahead sets the trained weights to the average at each update
and, with `trainer.ema_sync`, at the end of each epoch ("epoch") or only after the last step
("end": airbench94's final update; the steps since the update before are then left out).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

EMA_SYNCS = ("epoch", "end")


class WeightAverage:
    """The average of `net`'s floating-point parameters and buffers (BatchNorm statistics
    too). With `lookahead` the trained weights are set to the average at each update and at
    the end of each epoch, and evaluation uses them; without, evaluation uses the average."""

    def __init__(
        self,
        net: nn.Module,
        decay: float,
        every: int,
        lookahead: bool,
        start_step: int = 0,
        total_steps: int = 1,
        ramp_pow: float = 0.0,
        sync: str = "epoch",
    ) -> None:
        self.net = net
        self.decay, self.every, self.lookahead, self.sync = decay, every, lookahead, sync
        self.start_step, self.total_steps, self.ramp_pow = start_step, total_steps, ramp_pow
        self.average: dict[str, torch.Tensor] | None = None  # None until start_step
        self._evaluated: nn.Module | None = None  # a copy of net holding the average
        # The net's tensors, looked up once: state_dict() shares their storage, and building
        # it at every update would be work in the training loop.
        self._net_weights = self._weights(net)

    def _weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Called after every optimizer step; `step` counts them from 1."""
        if not (step % self.every or step <= self.start_step):
            self._update(step)
        last = step == self.total_steps and self.sync == "end"
        if last and self.lookahead and self.average is not None:
            self._copy_average_into(self._net_weights)

    def _update(self, step: int) -> None:
        weights = self._net_weights
        if self.average is None:  # the first update starts the average at the weights
            self.average = {k: v.detach().clone() for k, v in weights.items()}
            return
        decay = self.decay
        if self.ramp_pow:
            decay *= min(step / self.total_steps, 1.0) ** self.ramp_pow
        for name, value in weights.items():
            self.average[name].lerp_(value, 1 - decay)
        if self.lookahead:
            self._copy_average_into(weights)

    def epoch_done(self) -> None:
        if self.lookahead and self.average is not None and self.sync == "epoch":
            self._copy_average_into(self._net_weights)

    @torch.no_grad()
    def _copy_average_into(self, weights: dict[str, torch.Tensor]) -> None:
        for name, value in weights.items():
            value.copy_(self.average[name])

    def model_to_evaluate(self, trained: nn.Module) -> nn.Module:
        """The model evaluation scores: `trained` (the model as it trains, possibly wrapped or
        compiled) unless there is an average apart from it."""
        if self.lookahead or self.average is None:
            return trained
        if self._evaluated is None:
            self._evaluated = copy.deepcopy(self.net)
        self._copy_average_into(self._weights(self._evaluated))
        return self._evaluated

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        average = state["average"]
        if average is not None:
            expected = self._net_weights.keys()
            if average.keys() != expected:
                raise KeyError(f"averaged weights {sorted(average)} != {sorted(expected)}")
            average = {k: v.to(self.net_device()) for k, v in average.items()}
        self.average = average

    def net_device(self) -> torch.device:
        return next(self.net.parameters()).device
