"""`trainer.precision`: the numeric precision of the training step, and how `auto` picks it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from cifar_exp.config import TrainerConfig
from cifar_exp.errors import UserError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# CPU flags of native bf16 arithmetic: AVX-512 BF16 (Cooper Lake, Zen 4 and later) and AMX
# (Sapphire Rapids and later). Without them bf16 autocast on CPU is emulated, many times slower.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def read_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags (Linux's /proc/cpuinfo); None when they cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    return None if line is None else set(line.split(":", 1)[-1].split())


def choose_precision(
    device_type: str, cpu_flags: set[str] | None, cuda_bf16: bool
) -> tuple[str, str]:
    """`trainer.precision=auto`: (precision, why). bf16 where the hardware computes it
    natively, else fp32. Never fp16: it needs loss scaling and can overflow where bf16 cannot,
    so it stays a choice a user makes knowingly."""
    if device_type == "cuda":
        if cuda_bf16:
            return "bf16", "the GPU supports bf16 natively"
        return "fp32", "the GPU has no native bf16 (fp16 is left to trainer.precision=fp16)"
    if cpu_flags is None:
        return (
            "fp32",
            "the CPU's flags could not be read (/proc/cpuinfo), so native bf16 is unknown",
        )
    native = sorted(NATIVE_BF16_CPU_FLAGS & cpu_flags)
    if native:
        return "bf16", f"the CPU computes bf16 natively (flags {', '.join(native)})"
    return (
        "fp32",
        "the CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag): bf16 is emulated there",
    )


def _auto_precision(device: torch.device) -> tuple[str, str]:
    """choose_precision for this machine."""
    if device.type == "cuda":
        return choose_precision(
            "cuda", None, torch.cuda.is_bf16_supported(including_emulation=False)
        )
    return choose_precision(device.type, read_cpu_flags(), False)


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
            name, self.reason = _auto_precision(device)
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
