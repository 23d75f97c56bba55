"""Which torch device a run uses, and how the run's manifest names it."""

from __future__ import annotations

import torch

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


def describe_device(device: torch.device) -> str:
    """The device with its GPU model, as the manifest records it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
