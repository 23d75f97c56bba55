"""What the model looks at: Grad-CAM maps (Selvaraju et al., 2017) by captum's LayerGradCam.

The layer is found, not named: the last module (in the order modules finish their forward)
whose output is still an image, [N, C, H, W] with H, W >= 2: a ResNet's last stage, the last
pooling of LeNet5 or of the airbench net. Its gradient-weighted channels give a coarse map,
upsampled bilinearly to the input's size and scaled to [0, 1] per image.
"""

from __future__ import annotations

import torch
from torch import nn

EXTRA = "pip install 'cifar-exp[analysis]'"


def last_image_layer(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last module to finish whose output is [N, C, H, W] with H, W >= 2."""
    finished: list[nn.Module] = []

    def note(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[2:]) >= 2:
            finished.append(module)

    hooks = [m.register_forward_hook(note) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not finished:
        raise ValueError(f"{type(model).__name__} has no layer with a spatial output")
    return finished[-1]


def gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[N, H, W] maps in [0, 1] of where `images` [N, C, H, W] (model input) speak for
    `targets` [N] (class indices), by Grad-CAM at `last_image_layer`."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    layer = last_image_layer(model, images[:1])
    maps = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True)
    maps = LayerAttribution.interpolate(maps.detach(), tuple(images.shape[2:]), "bilinear")
    maps = maps[:, 0].clamp(min=0)
    return maps / maps.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
