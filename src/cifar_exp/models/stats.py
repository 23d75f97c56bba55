"""How heavy a model is: its parameters, the floating-point operations of one forward pass
on one image, the output shape and share of each layer, and the activation memory of one
training batch.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (a multiply-add is two;
convolutions and matrix products only, so normalization and activations are left out) on
the meta device: only shapes are needed, so no weight is initialized, no product computed
and no memory taken, whatever the model's size. A run counts them at its start
(`forward_flops`), `python -m cifar_exp.model_summary` shows them per layer (`summarize`), and
scripts/docs/model_table.py writes the docs' model table from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models import MODELS
from cifar_exp.models.base import ModelOptions

if TYPE_CHECKING:
    from torch.utils.flop_counter import FlopCounterMode


def meta_model(node: ModelOptions | Mapping[str, Any]) -> nn.Module:
    """The network `node` describes, built on the meta device, in eval mode. Its pretrained
    weights are not fetched; the CPU's random numbers are left as they were, so counting
    inside a run changes none of its draws."""
    options = node if isinstance(node, ModelOptions) else MODELS.options(node)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return MODELS.build(options.without_pretrained()).eval()


def param_counts(net: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameters, each tensor counted once."""
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return trainable, frozen


def count_flops(net: nn.Module, image_shape: tuple[int, ...]) -> FlopCounterMode:
    """The counter after one forward pass of `net` on one image of `image_shape` [C, H, W],
    on the device `net` is on (the meta device: nothing is computed)."""
    device = next(net.parameters()).device
    # Imported here: it loads triton (a tenth of a second) where it is installed.
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad(), counter:
        net(torch.zeros(1, *image_shape, device=device))
    return counter


# (the options' repr, the image shape) -> FLOPs: they depend on nothing else, so a process
# counts each model once (a run's start asks twice: for its log line and for HParams).
_counted: dict[tuple[str, tuple[int, ...]], int] = {}


def forward_flops(node: ModelOptions | Mapping[str, Any], image_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image of `image_shape`, counted on the meta device."""
    options = node if isinstance(node, ModelOptions) else MODELS.options(node)
    key = (repr(options), tuple(image_shape))
    if key not in _counted:
        _counted[key] = count_flops(meta_model(options), image_shape).get_total_flops()
    return _counted[key]


@dataclass
class Layer:
    """One row of the inspector's table: a module down to the depth asked for."""

    name: str  # its path in the model (groups.0.conv1)
    kind: str  # its class name
    depth: int  # 1 for the model's children
    output_shape: list[list[int]]  # of each tensor it returned, batch of one image
    trainable: int  # parameters, its submodules' included
    frozen: int
    flops: int  # of one image, its submodules' included


@dataclass
class ModelSummary:
    """The table of layers and the model's totals."""

    model: str
    input_shape: list[int]
    layers: list[Layer]
    trainable: int
    frozen: int
    flops: int  # of one image's forward pass
    activations: dict[str, Any] = field(default_factory=dict)  # see activation_memory

    @property
    def params(self) -> int:
        return self.trainable + self.frozen


def _shapes(output: Any) -> list[list[int]]:
    if isinstance(output, torch.Tensor):
        return [list(output.shape)]
    if isinstance(output, list | tuple):
        return [shape for item in output for shape in _shapes(item)]
    if isinstance(output, Mapping):
        return [shape for item in output.values() for shape in _shapes(item)]
    return []


def summarize(net: nn.Module, image_shape: tuple[int, ...], depth: int, name: str) -> ModelSummary:
    """Every module of `net` down to `depth` levels (1: its children) with its output shape,
    parameters and FLOPs, from one forward pass of one image counted on `net`'s device (the
    meta device: nothing is computed)."""
    modules = [(n, m) for n, m in net.named_modules() if n and n.count(".") < depth]
    shapes: dict[str, list[list[int]]] = {}

    def recorder(path: str) -> Any:
        def hook(_: nn.Module, __: Any, output: Any) -> None:
            shapes.setdefault(path, _shapes(output))  # a module called twice: its first call

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in modules]
    try:
        counter = count_flops(net, image_shape)
    finally:
        for handle in handles:
            handle.remove()
    # FlopCounterMode names each module <the model's class>.<its path>.
    root = type(net).__name__
    counts = counter.get_flop_counts()
    layers = [
        Layer(
            name=n,
            kind=type(m).__name__,
            depth=n.count(".") + 1,
            output_shape=shapes.get(n, []),
            trainable=param_counts(m)[0],
            frozen=param_counts(m)[1],
            flops=int(sum(counts.get(f"{root}.{n}", {}).values())),
        )
        for n, m in modules
    ]
    trainable, frozen = param_counts(net)
    return ModelSummary(
        name, list(image_shape), layers, trainable, frozen, counter.get_total_flops()
    )


def activation_memory(
    net: nn.Module,
    image_shape: tuple[int, ...],
    batch_size: int,
    num_classes: int,
    autocast: Any,
) -> dict[str, Any]:
    """The activation memory of one training batch of `batch_size` random images, measured on
    `net`'s device, in train mode, under `autocast` (the run's precision):

    - `saved_bytes` (every device): the tensors autograd keeps from the forward pass for the
      backward pass, which is what a training batch holds in memory beyond the weights,
      gradients and optimizer state; read with torch.autograd.graph.saved_tensors_hooks,
      each storage counted once and the parameters left out. On the CPU it is the measure:
      the process's RSS moves with what the allocator keeps or returns, not with the batch.
    - `cuda_peak_bytes` (CUDA only): the allocator's peak during the forward and backward
      pass above what was allocated before it (weights and batch), temporaries included.
    """
    device = next(net.parameters()).device
    images = torch.randn(batch_size, *image_shape, device=device)
    labels = torch.randint(0, num_classes, (batch_size,), device=device)
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    net.train()
    before = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        loss = F.cross_entropy(net(images), labels)
    loss.backward()
    result: dict[str, Any] = {"batch_size": batch_size, "device": str(device)}
    result["saved_bytes"] = sum(saved.values())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) - before
    return result
