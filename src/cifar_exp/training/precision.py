"""`trainer.precision`: the numeric precision of the training step, and how `auto` picks it."""

from __future__ import annotations

import contextlib

import torch

from cifar_exp.config import TrainerConfig
from cifar_exp.errors import UserError
from cifar_exp.runtime.device import auto_precision

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """`trainer.precision`: fp32; bf16 autocast (CPU and GPU); fp16 autocast with a GradScaler
    (GPU only: fp16's narrow range needs the loss scaling, which is a CUDA feature here); auto
    (choose_precision). `name` is the precision used, `requested` what was asked for and
    `reason` why `name` was picked: the hardware's features for auto, else whether it is the
    default (the schema's: a config cannot tell a default from the same value typed)."""

    def __init__(self, name: str, device: torch.device) -> None:
        self.requested = name
        given = "(the default)" if name == TrainerConfig.precision else "was set"
        self.reason = f"trainer.precision={name} {given}"
        if name == "auto":
            name, self.reason = auto_precision(device)
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
        # Loss scaling keeps fp16's small gradients from flushing to zero; disabled, every
        # call on it passes through, so the training step reads the same in every precision.
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Run the forward pass (and the loss) in this precision."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
