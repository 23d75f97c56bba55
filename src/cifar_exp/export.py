"""`python -m cifar_exp.export ckpt=<checkpoint or run dir> format=onnx|torchscript|exported`:
the trained network as a file that runs without cifar-exp, then checked.

The file takes float32 RGB images in [0, 1], [N, 3, H, W] with any N, and returns the
logits: the run's normalization is inside it. `model.json` beside it says so, with the
classes, the input size and the mean and std. Before it is called done, the file is run
(onnxruntime for ONNX, torch.jit for TorchScript, torch.export for an exported program) on
`check_images` test images of the run's own data set, a class-balanced subset, and compared
with the model it came from: the largest logit difference and the top-1 agreement are
printed, and a difference above `tolerance` or any disagreement exits 1.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from cifar_exp.config import ExportConfig, check_entrypoint
from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.augment import eval_transform
from cifar_exp.datasets.batches import to_model_input
from cifar_exp.datasets.subsets import stratified_subset
from cifar_exp.errors import UserError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.records.atomic import write_json
from cifar_exp.records.checkpoint import find_checkpoint
from cifar_exp.training.inference import load_trained, required

log = logging.getLogger("cifar_exp")

FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "exported": "model.pt2"}


class Standalone(nn.Module):
    """The network with the run's normalization in front: images in [0, 1] -> logits."""

    def __init__(self, net: nn.Module, mean: list[float] | None, std: list[float] | None):
        super().__init__()
        self.net = net
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean or [0.0, 0.0, 0.0]).view(shape))
        self.register_buffer("std", torch.tensor(std or [1.0, 1.0, 1.0]).view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


def write(model: nn.Module, example: torch.Tensor, fmt: str, path: Path) -> None:
    """`model` in `fmt` at `path`, its batch size left free. ONNX goes through the
    TorchScript-based exporter: the dynamo one needs onnxscript and takes seconds more."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' notes on what they folded
            _write(model, example, fmt, path)
    except ImportError as err:
        raise UserError(f'format={fmt} needs {err.name}: pip install -e ".[export]"') from err
    except Exception as err:  # an operator the format lacks, a model it cannot trace
        reason = " ".join(str(err).split())[:300]
        raise UserError(f"the model cannot be exported as format={fmt}: {reason}") from err


def _write(model: nn.Module, example: torch.Tensor, fmt: str, path: Path) -> None:
    if fmt == "onnx":
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, example), str(path))
    else:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))


def runner(fmt: str, path: Path) -> Any:
    """A function images (numpy float32) -> logits (numpy) that runs the file alone."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise UserError(
                'checking an ONNX export needs onnxruntime: pip install -e ".[export]"'
            ) from err
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["logits"], {"images": x})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation note
        module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path))
    call = module if fmt == "torchscript" else module.module()
    return lambda x: call(torch.from_numpy(x)).detach().numpy()


def check(model: nn.Module, run: Any, images: torch.Tensor, tolerance: float) -> dict[str, Any]:
    """Score `images` with the model and the exported file, 100 at a time (so the free batch
    size is used); their largest logit difference and top-1 agreement."""
    worst, agree = 0.0, 0
    for start in range(0, len(images), 100):
        batch = images[start : start + 100]
        with torch.no_grad():
            expected = model(batch).numpy()
        got = np.asarray(run(batch.numpy()))
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
    passed = worst <= tolerance and agree == len(images)
    return {"images": len(images), "max_logit_diff": worst, "top1_agree": agree, "passed": passed}


def test_images(run_cfg: DictConfig, count: int, root: str | None) -> torch.Tensor:
    """`count` test images of the run's data set (a class-balanced subset), in [0, 1]."""
    dataset = OmegaConf.to_container(run_cfg.dataset, resolve=True)
    dataset["num_classes"] = None
    if root is not None:
        dataset["root"] = root
    test = load_dataset(dataset).test
    index = stratified_subset(test.labels, min(count, len(test.labels)), 0)
    return to_model_input(test.images[index], torch.device("cpu"))


def export_checkpoint(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    spec = required(cfg, "ckpt", "python -m cifar_exp.export ckpt=<checkpoint or run dir>")
    check_entrypoint(ExportConfig, cfg)
    net, run_cfg, state = load_trained(spec, torch.device("cpu"))
    augment = OmegaConf.to_container(run_cfg.augment, resolve=True)
    norm = eval_transform(augment)
    mean, std = (augment["mean"], augment["std"]) if norm is not None else (None, None)
    model = Standalone(net, mean, std).eval()
    images = test_images(run_cfg, cfg.check_images, cfg.dataset_root)
    path = out_dir / FILES[cfg.format]
    write(model, images[:2], cfg.format, path)
    result = check(model, runner(cfg.format, path), images, cfg.tolerance)
    sidecar = {
        "checkpoint": str(find_checkpoint(spec)),
        "model": run_cfg.model.name,
        "format": cfg.format,
        "file": path.name,
        "input": "float32 RGB images in [0, 1], [batch, 3, height, width], any batch size",
        "input_size": list(images.shape[1:]),
        "normalization": "inside the file" if norm is not None else "none",
        "mean": mean,
        "std": std,
        "classes": list(state["classes"]),
        "check": result,
    }
    write_json(out_dir / "model.json", sidecar)
    line = (
        f"{path}: max |logit difference| {result['max_logit_diff']:.2e} (tolerance "
        f"{cfg.tolerance:g}), top-1 agreement {result['top1_agree']}/{result['images']}"
    )
    if not result["passed"]:
        raise UserError(f"the export does not match the model: {line}")
    print(f"exported and checked: {line}")
    return sidecar


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    in_output_dir(export_checkpoint, cfg)


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
