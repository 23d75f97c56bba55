"""Rules that end a run at an epoch boundary before its last epoch: early stopping here, and
any other rule built the same way (a pruner of a search, say).

A rule sees each epoch's values once the epoch is evaluated (`after_evaluation`) and returns a
`Stop` when the run should end there; its state goes into the checkpoint, so a resumed run
continues its count exactly. The Trainer asks its rules in order after every epoch: the first
`Stop` makes it save last.pt and end fit() normally, with the Stop's status recorded (the
manifest, metrics.json) and its epoch under the Stop's key. Nothing here needs torch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

# The monitor a user types (TensorBoard's tag) -> the per-epoch metrics.json key it reads.
# `val` is the per-epoch evaluation: the validation split, or the test split without one.
MONITORS = ("val/acc", "val/loss", "train/acc", "train/loss")
MODES = ("auto", "min", "max")


@dataclass(frozen=True)
class Stop:
    """How a rule ends a run: the manifest's status for it ('ok' for an early stop; a pruner
    would say 'pruned'), the last epoch trained, one line saying why, and the metrics.json
    and manifest key that records the epoch; `details` are recorded beside it."""

    status: str
    epoch: int
    reason: str
    key: str
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What metrics.json's `final` and the manifest record about the stop."""
        return {self.key: self.epoch, **self.details, "stop_reason": self.reason}

    def state_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "epoch": self.epoch,
            "reason": self.reason,
            "key": self.key,
            "details": dict(self.details),
        }


class StopRule(Protocol):
    """What the Trainer asks after each epoch (values: that epoch's metrics.json entry)."""

    def after_evaluation(self, epoch: int, values: dict[str, float]) -> Stop | None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def first_stop(rules: list[StopRule], epoch: int, values: dict[str, float]) -> Stop | None:
    """The Stop of the first rule that fires after `epoch`; every rule sees the epoch (each
    keeps its own count), so their states do not depend on which fired."""
    stops = [rule.after_evaluation(epoch, values) for rule in rules]
    return next((stop for stop in stops if stop is not None), None)


class RuleStates:
    """The rules' states as one checkpoint part, each under its position and class name."""

    def __init__(self, rules: list[StopRule]) -> None:
        self.rules = rules

    def _names(self) -> list[str]:
        return [f"{i}:{type(rule).__name__}" for i, rule in enumerate(self.rules)]

    def state_dict(self) -> dict[str, Any]:
        pairs = zip(self._names(), self.rules, strict=True)
        return {name: rule.state_dict() for name, rule in pairs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [name for name in self._names() if name not in state]
        if missing:
            raise KeyError(f"no state for the stop rule(s) {', '.join(missing)}")
        for name, rule in zip(self._names(), self.rules, strict=True):
            rule.load_state_dict(state[name])


class EarlyStopping:
    """Stop when `key` (a per-epoch metrics.json key) has not improved by more than
    `min_delta` for `patience` evaluations in a row (Lightning's EarlyStopping rule). Epochs
    whose values lack the key (not evaluated: trainer.eval_every) do not count."""

    KEY = "stopped_early_at_epoch"

    def __init__(self, key: str, mode: str, patience: int, min_delta: float) -> None:
        self.key, self.mode, self.patience, self.min_delta = key, mode, patience, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0  # evaluations since the best

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def after_evaluation(self, epoch: int, values: dict[str, float]) -> Stop | None:
        if self.key not in values:
            return None
        value = values[self.key]
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return None
        self.wait += 1
        if self.wait < self.patience:
            return None
        reason = (
            f"early stopping: {self.key} did not improve on {self.best:.4f} (epoch "
            f"{self.best_epoch}) by more than {self.min_delta:g} for {self.patience} evaluations"
        )
        details = {"early_stopping_best_epoch": self.best_epoch, "early_stopping_best": self.best}
        return Stop("ok", epoch, reason, self.KEY, details)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


def monitored_key(monitor: str, has_val: bool) -> str:
    """The per-epoch metrics.json key `monitor` reads: `val/...` is the validation split, or
    the test split (with a warning) when none is held out."""
    split, metric = monitor.split("/")
    if split == "val" and not has_val:
        log.warning(
            "trainer.early_stopping.monitor=%s: no validation split is held out, so early "
            "stopping watches test/%s and selects on the test set; add dataset.val_size=5000 "
            "to stop on a validation split",
            monitor,
            metric,
        )
        split = "test"
    return f"{split}_{metric}"


def early_stopping(
    monitor: str, mode: str, patience: int, min_delta: float, has_val: bool
) -> EarlyStopping:
    """The rule trainer.early_stopping describes; mode `auto`: max for accuracy, min for loss."""
    if mode == "auto":
        mode = "max" if monitor.endswith("/acc") else "min"
    key = monitored_key(monitor, has_val)
    log.info(
        "early stopping on %s (%s), patience %d evaluations, min_delta %g",
        key,
        mode,
        patience,
        min_delta,
    )
    return EarlyStopping(key, mode, patience, min_delta)
