"""What the by-name models (`model=timm`, `model=torchvision`) share: one line for an unknown
name, a fast refusal of weights that cannot be fetched, and the small-input ResNet stem."""

from __future__ import annotations

import difflib
import os
import socket
import threading
from pathlib import Path

from torch import nn

from cifar_exp.errors import ConfigError

PROBE_TIMEOUT_S = 5.0  # how long to wait for a weights server before saying it is unreachable
CLOSEST = 5  # names offered for a misspelled one


def check_known(arch: str, known: list[str], where: str) -> None:
    """Refuse `arch` unless it is one of `known`, naming the closest ones in one line."""
    if arch in known:
        return
    # A letter typed for the digit it looks like (efficientnet_bo) ties with every other
    # one-character change (b4, b8): the look-alike comes first.
    alike = [name for name in known if _shape(name) == _shape(arch)]
    close = alike + [
        name
        for name in difflib.get_close_matches(arch, known, n=CLOSEST, cutoff=0.5)
        if name not in alike
    ]
    close = close[:CLOSEST]
    offer = f"closest: {', '.join(close)}" if close else "no close name"
    # Relative to the group: typed_options puts "model." in front.
    raise ConfigError(f"arch: unknown architecture '{arch}' ({offer}; {where} lists all)")


_LOOK_ALIKE = str.maketrans({"o": "0", "O": "0", "l": "1", "I": "1"})


def _shape(name: str) -> str:
    return name.lower().translate(_LOOK_ALIKE)


def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, name lookup
    included (which a socket timeout does not bound, hence the thread)."""
    opened = threading.Event()

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return opened.is_set()


def require_download(what: str, destination: Path, host: str, fetch: str) -> None:
    """Refuse, in one line, weights that are not cached at `destination` and cannot be
    downloaded from `host` now; `fetch` says how to put them there."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" and "huggingface" in host
    if offline or not reachable(host):
        raise ConfigError(
            f"{what}: the weights are not cached at {destination} and {host} cannot be "
            f"reached; {fetch}"
        )


def small_input_stem(model: nn.Module) -> None:
    """Give a ResNet-family network (`conv1` then `maxpool`) a 3x3 stride-1 first
    convolution and no max-pool, so a 32x32 image keeps its resolution into the first stage,
    as the CIFAR ResNets do. A deep stem (a sequence of 3x3 convolutions) keeps its layers
    with the first one's stride set to 1."""
    stem = model.conv1
    if isinstance(stem, nn.Conv2d):
        model.conv1 = nn.Conv2d(stem.in_channels, stem.out_channels, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    else:
        first = next(m for m in stem.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
    model.maxpool = nn.Identity()


def has_resnet_stem(model: nn.Module) -> bool:
    return isinstance(getattr(model, "conv1", None), nn.Module) and hasattr(model, "maxpool")
