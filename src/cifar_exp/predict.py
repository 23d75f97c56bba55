"""`python -m cifar_exp.predict ckpt=<checkpoint or run dir> images=<file or folder>`.

Prints the top_k classes of each image with their probabilities and writes them to
`predictions.json` in its own output folder. Images of any size and format Pillow reads
are resized to the training images' size and go through the same preprocessing as
training's evaluation (`data.to_model_input`, then the run's normalization if it had one).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_exp.components.tta import tta_logits
from cifar_exp.config import PredictConfig, check_entrypoint
from cifar_exp.datasets.augment import eval_transform
from cifar_exp.datasets.batches import resize_images, to_model_input
from cifar_exp.errors import UserError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.records.atomic import write_json
from cifar_exp.runtime.device import resolve_device
from cifar_exp.training.inference import load_trained, required

log = logging.getLogger("cifar_exp")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def image_files(spec: str) -> list[Path]:
    """The file itself, or every image file under the folder (sorted, recursive)."""
    path = Path(spec).expanduser().absolute()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(
                f"no image files in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return files
    raise UserError(f"images={spec}: no such file or folder ({path})")


def read_image(path: Path) -> torch.Tensor:
    """uint8 [3, H, W] RGB, whatever the file's mode (grey, palette, alpha)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path} is not an image that can be read ({err})") from err
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


@torch.no_grad()
def predict(cfg: DictConfig, out_dir: Path) -> list[dict[str, Any]]:
    spec = required(cfg, "ckpt", "python -m cifar_exp.predict ckpt=<checkpoint> images=<path>")
    files = image_files(required(cfg, "images", "images=<image file or folder>"))
    check_entrypoint(PredictConfig, cfg)
    device = resolve_device(cfg.device)
    model, run_cfg, state = load_trained(spec, device)
    transform = eval_transform(OmegaConf.to_container(run_cfg.augment, resolve=True))
    classes = list(state["classes"])
    size = tuple(state["input_shape"][1:])
    k = min(cfg.top_k, len(classes))
    results = []
    for lo in range(0, len(files), cfg.batch_size):
        chunk = files[lo : lo + cfg.batch_size]
        images = torch.stack([resize_images(read_image(p)[None], size)[0] for p in chunk])
        inputs = to_model_input(images, device)
        if transform is not None:
            inputs = transform(inputs, torch.Generator())
        probs = tta_logits(model, inputs, cfg.tta).softmax(1).cpu()
        top = probs.topk(k, dim=1)
        for path, values, indices in zip(chunk, top.values, top.indices, strict=True):
            ranked = [
                {"class": classes[i], "prob": p}
                for p, i in zip(values.tolist(), indices.tolist(), strict=True)
            ]
            results.append({"image": str(path), "top": ranked})
            shown = ", ".join(f"{r['class']} {r['prob']:.3f}" for r in ranked)
            print(f"{path}: {shown}")  # the command's output, not a diagnostic
    write_json(out_dir / "predictions.json", results)
    log.info("%d images; wrote %s", len(results), out_dir / "predictions.json")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    in_output_dir(predict, cfg)


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
