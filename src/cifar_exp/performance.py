"""How fast a training step runs: numeric precision, memory format, torch.compile; and the
peak memory a run took.
"""

from __future__ import annotations

import contextlib
import resource

import torch
from torch import nn

from cifar_exp.errors import UserError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """`trainer.precision`: fp32; bf16 autocast (CPU and GPU); fp16 autocast with a GradScaler
    (GPU only: fp16's narrow range needs the loss scaling, which is a CUDA feature here)."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name == "fp16" and device.type != "cuda":
            raise UserError(
                f"trainer.precision=fp16 needs a CUDA GPU but the run is on {device.type}; "
                "use trainer.precision=bf16 (autocast on CPU) or fp32"
            )
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(
                f"trainer.precision=bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                "use trainer.precision=fp16 or fp32"
            )
        self.name = name
        self.device_type = device.type
        self.dtype = AUTOCAST_DTYPES[name]
        self.scaler = torch.amp.GradScaler("cuda") if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Run the forward pass (and the loss) in this precision."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backpropagate and step; with fp16 the loss is scaled and overflowing steps skipped."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def _inputs_channels_last(_: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def use_channels_last(model: nn.Module) -> nn.Module:
    """Keep weights and incoming batches in NHWC, the layout fast convolution kernels prefer."""
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(_inputs_channels_last)
    return model


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """torch.compile; the compilation itself happens in the first steps (timed by the engine)."""
    return torch.compile(model, mode=None if mode == "default" else mode)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA's max allocated on a GPU, the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
