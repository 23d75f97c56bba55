"""airbench94's network (Keller Jordan, KellerJordan/cifar10-airbench; arXiv 2404.00498).

A fixed 2x2 convolution that whitens the input patches (set from training images by
`Airbench.init_from_data`), GELU, three blocks of conv3x3 -> max-pool -> BatchNorm -> GELU
-> conv3x3 -> BatchNorm -> GELU, a global max-pool and a bias-free linear head whose output
is scaled down. BatchNorm keeps its weights at one (frozen) and trains only its biases.
At the default widths 64/256/256: 1,972,792 parameters, 1,971,328 of them trained.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cifar_exp.models.base import MODELS, ModelOptions
from cifar_exp.registry import require

PATCH = 2  # side of the whitening filters
# One filter per eigenvector of the 3 * 2 * 2 patch covariance, and its negation (so that
# the GELU after it passes both signs of every whitened component).
WHITEN_WIDTH = 2 * 3 * PATCH * PATCH
WHITEN_EPS = 5e-4  # added to the eigenvalues, so near-constant directions are not blown up
PATCH_CHUNK = 1024  # images per step when summing patch products (bounds the memory used)
HEADS = ("scaled", "unit_std")


@dataclass
class AirbenchOptions(ModelOptions):
    widths: list[int] = field(default_factory=lambda: [64, 256, 256])  # channels of the blocks
    # airbench's convention: the share of the running statistics kept at each step
    # (PyTorch's BatchNorm momentum is 1 minus this).
    batchnorm_momentum: float = 0.6
    scaling: float = 1 / 9  # multiplies the logits (head=scaled)
    # scaled: torch's init of the head, its logits times `scaling` (airbench94); unit_std: its
    # weights rescaled to unit std at init, its logits divided by its width (airbench94_muon).
    head: str = "scaled"
    # Epochs the whitening layer's bias trains before it is frozen (airbench94: 3); 0: never.
    whiten_bias_epochs: int = 0

    def check(self) -> None:
        super().check()
        ok = len(self.widths) == 3 and all(width >= 1 for width in self.widths)
        require(ok, "widths", "three positive integers", self.widths)
        momentum_ok = 0 < self.batchnorm_momentum < 1
        require(momentum_ok, "batchnorm_momentum", "in (0, 1)", self.batchnorm_momentum)
        require(self.scaling > 0, "scaling", "> 0", self.scaling)
        require(self.head in HEADS, "head", f"one of {', '.join(HEADS)}", self.head)
        epochs = self.whiten_bias_epochs
        require(epochs >= 0, "whiten_bias_epochs", ">= 0 (0 = never trained)", epochs)


def frozen_weight_batchnorm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm whose weight stays one: only its bias (a per-channel shift) trains."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=1 - momentum)
    norm.weight.requires_grad_(False)
    return norm


def identity_started_conv(ch_in: int, ch_out: int) -> nn.Conv2d:
    """A bias-free 3x3 convolution whose first filters start as the identity: an implicit
    residual connection at the start of training, as in airbench."""
    conv = nn.Conv2d(ch_in, ch_out, 3, padding="same", bias=False)
    nn.init.dirac_(conv.weight[:ch_in])
    return conv


class ConvGroup(nn.Sequential):
    def __init__(self, ch_in: int, ch_out: int, momentum: float) -> None:
        super().__init__(
            identity_started_conv(ch_in, ch_out),
            nn.MaxPool2d(2),
            frozen_weight_batchnorm(ch_out, momentum),
            nn.GELU(),
            identity_started_conv(ch_out, ch_out),
            frozen_weight_batchnorm(ch_out, momentum),
            nn.GELU(),
        )


def patch_second_moment(images: torch.Tensor, size: int) -> torch.Tensor:
    """E[p p^T] over every `size` x `size` patch p of `images` [N, C, H, W], flattened in the
    (channel, row, column) order of a convolution's filters; float64, [C*size*size]^2."""
    dim = images.shape[1] * size * size
    total = torch.zeros(dim, dim, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(PATCH_CHUNK):
        patches = chunk.unfold(2, size, 1).unfold(3, size, 1)  # [n, C, h, w, size, size]
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim).double()
        total += flat.T @ flat
        count += len(flat)
    return total / count


class Airbench(nn.Module):
    def __init__(self, options: AirbenchOptions) -> None:
        super().__init__()
        # Its weights are not trained: they come from `init_from_data`. Its bias (zero at
        # first) trains in the first `whiten_bias_epochs` epochs (set_epoch), as airbench's.
        self.whiten = nn.Conv2d(3, WHITEN_WIDTH, PATCH, bias=True)
        nn.init.zeros_(self.whiten.bias)
        self.whiten.weight.requires_grad_(False)
        self.whiten_bias_epochs = options.whiten_bias_epochs
        self.whiten.bias.requires_grad_(self.whiten_bias_epochs > 0)
        ins = [WHITEN_WIDTH, *options.widths]
        self.blocks = nn.Sequential(
            *(
                ConvGroup(a, b, options.batchnorm_momentum)
                for a, b in zip(ins[:-1], options.widths, strict=True)
            )
        )
        self.head = nn.Linear(options.widths[-1], options.num_classes, bias=False)
        self.scaling = options.scaling
        if options.head == "unit_std":
            with torch.no_grad():
                self.head.weight /= self.head.weight.std()
            self.scaling = 1 / options.widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.gelu(self.whiten(x)))
        # On 32x32 input the maps are 3x3 here: the same as airbench's MaxPool2d(3).
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.scaling

    def set_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (from 1) starts: the whitening bias trains up to whiten_bias_epochs.
        A frozen bias gets no gradient, so the optimizer leaves it alone entirely (no
        momentum, no weight decay), as airbench's requires_grad=False does."""
        self.whiten.bias.requires_grad_(epoch <= self.whiten_bias_epochs)

    def early_parameters(self) -> list[tuple[nn.Parameter, int]]:
        """The whitening bias, if it trains at all: for its first whiten_bias_epochs."""
        epochs = self.whiten_bias_epochs
        return [(self.whiten.bias, epochs)] if epochs > 0 else []

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = WHITEN_EPS) -> None:
        """Set the whitening filters from `images` [N, 3, H, W], training images as the
        model sees them (normalized floats): each eigenvector v of their patches' second
        moment, scaled by 1 / sqrt(eigenvalue + eps), and -v; strongest components first.
        The filtered patches then have second moment diag(eigenvalue / (eigenvalue + eps)):
        the identity, but for the components weaker than `eps`."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            shown = f"{images.dtype} {list(images.shape)}"
            raise ValueError(f"expected float images [N, 3, H, W], got {shown}")
        eigenvalues, eigenvectors = torch.linalg.eigh(patch_second_moment(images, PATCH))
        filters = eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]
        filters = filters.flip(0).reshape(-1, 3, PATCH, PATCH)
        self.whiten.weight.copy_(torch.cat([filters, -filters]))


@MODELS.register("airbench", AirbenchOptions)
def airbench(options: AirbenchOptions) -> Airbench:
    return Airbench(options)
