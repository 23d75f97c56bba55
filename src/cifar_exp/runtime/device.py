"""Which torch device a run uses, how the run's manifest names it, and what suits the model to
it: the memory format, compilation, and the peak memory a run took."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch
from torch import nn

from cifar_exp.errors import UserError


def resolve_device(kind: str) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without a GPU is a user error, not a crash."""
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device=cuda was asked for but no CUDA GPU is available "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "use device=cpu or device=auto"
        )
    return torch.device(kind)


# cuBLAS's deterministic workspace (NVIDIA's cuBLAS docs, "Results reproducibility").
CUBLAS_WORKSPACE = ":4096:8"


def set_deterministic(on: bool) -> None:
    """trainer.deterministic: only deterministic kernels (an operation without one raises),
    cuDNN's deterministic algorithms without its benchmark; before anything is built, as
    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when its first handle is made. Off: torch's defaults
    (a process that ran a deterministic run in-process gets them back)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    # Only when it changes: the call imports torch's compiler stack (seconds at start-up).
    if torch.are_deterministic_algorithms_enabled() != on:
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def describe_device(device: torch.device) -> str:
    """The device with its GPU model, as the manifest records it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


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


def auto_precision(device: torch.device) -> tuple[str, str]:
    """choose_precision for this machine."""
    if device.type == "cuda":
        return choose_precision(
            "cuda", None, torch.cuda.is_bf16_supported(including_emulation=False)
        )
    return choose_precision(device.type, read_cpu_flags(), False)
