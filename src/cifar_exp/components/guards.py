"""Ways training fails that a user can fix: a loss that turned NaN or infinite, running out of
accelerator memory; each with a message that says what to try."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from cifar_exp.errors import UserError


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite."""


class OutOfMemory(UserError):
    """The accelerator ran out of memory."""


class NoDeterministicKernel(UserError):
    """trainer.deterministic=true met an operation that has no deterministic implementation."""


@contextlib.contextmanager
def deterministic_hint(device: torch.device) -> Iterator[None]:
    """torch's error for an operation without a deterministic implementation (under
    trainer.deterministic=true) as one line naming the operation."""
    try:
        yield
    except RuntimeError as err:
        text = str(err)
        if "does not have a deterministic implementation" not in text:
            raise
        op = text.split(" does not have a deterministic implementation")[0].strip()
        raise NoDeterministicKernel(
            f"trainer.deterministic=true: {op} has no deterministic implementation on "
            f"{device}; use another model or option, or trainer.deterministic=false"
        ) from None


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
            ", or keep it in micro-batches, e.g. trainer.accumulate_grad_batches=2 (a new "
            "run: both are part of the experiment)"
            if batch_key == "trainer.batch_size"
            else ""
        )
        + f"; {kept}."
    )
