"""Ways a run stops early: a signal from the user, a non-finite loss, running out of memory."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

import torch

from cifar_exp.errors import UserError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run stopped on a signal after saving a checkpoint it can resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite."""


class OutOfMemory(UserError):
    """The accelerator ran out of memory."""


class StopOnSignal:
    """Turns the first SIGINT/SIGTERM into a request to stop after the current step.

    The handlers go back to what they were as soon as the first signal arrives, so a second
    Ctrl-C stops at once. Outside the main thread (where Python cannot install handlers)
    this does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()
        log.warning(
            "%s received: finishing this step and saving a checkpoint (send it again to stop at "
            "once)",
            signal.Signals(signum).name,
        )

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()


class NonFiniteWatch:
    """Notes the first non-finite loss on the device, without a host sync every step.

    `observe` runs every step; `check` (called where the loop syncs anyway) raises
    NonFiniteLoss naming the first bad step and the last finite loss before it.
    """

    def __init__(self, device: torch.device) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.last_good = torch.full((), float("nan"), device=device)
        self.last_good_step = torch.full((), 0, dtype=torch.int64, device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        finite = torch.isfinite(loss)
        clean = self.first_bad < 0
        keep = finite & clean
        self.last_good = torch.where(keep, loss, self.last_good)
        self.last_good_step = torch.where(keep, step, self.last_good_step)
        self.first_bad = torch.where(~finite & clean, step, self.first_bad)

    def check(self, steps_per_epoch: int, kept: str) -> None:
        bad = int(self.first_bad.item())
        if bad < 0:
            return
        epoch = (bad - 1) // steps_per_epoch + 1
        if self.last_good_step.item() > 0:
            before = f"the last finite loss was {self.last_good.item():.4g} at step "
            before += str(int(self.last_good_step.item()))
        else:
            before = "no step before it had a finite loss"
        raise NonFiniteLoss(
            f"the training loss became non-finite (NaN or inf) at step {bad} (epoch {epoch}); "
            f"{before}. Training stopped; {kept}. Try a smaller optimizer.lr, a warmup "
            "(scheduler.warmup_epochs) or fp32 precision, and start a new run; "
            "trainer.stop_on_nonfinite=false trains on regardless."
        )


def out_of_memory(
    err: BaseException, phase: str, batch_key: str, batch_size: int, device: torch.device, kept: str
) -> OutOfMemory:
    """The message for running out of accelerator memory, with a batch size to try."""
    first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
    smaller = max(1, batch_size // 2)
    return OutOfMemory(
        f"out of memory on {device} during {phase} with {batch_key}={batch_size} "
        f"({first_line}). Use a smaller batch, e.g. {batch_key}={smaller}"
        + (
            " (a new run: the batch size is part of the experiment)"
            if batch_key == "trainer.batch_size"
            else ""
        )
        + f"; {kept}."
    )
