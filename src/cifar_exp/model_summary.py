"""`python -m cifar_exp.model_summary <run overrides>`: how heavy the model of a run is.

Takes every override a run takes (`model=wrn model.depth=16`, `experiment=speedrun94`,
`dataset=imagefolder dataset.image_size=64` ...), composes the run's config as
`python -m cifar_exp.run` would and prints the model's layers (`model_summary.depth` levels) with
their output shapes, parameters (trainable / frozen) and FLOPs per image, the totals, and the
activation memory of one training batch measured on the run's device (models/stats.py says
how). Nothing is trained and no image is read: the input shape and the number of classes
come from the dataset's options. The table is also written to `model_summary.json` in the
command's own output folder.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_exp.config import ModelSummaryConfig, ModelSummaryOptions, validate
from cifar_exp.datasets import DATASETS
from cifar_exp.errors import ConfigError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.models import MODELS
from cifar_exp.models.base import ModelOptions
from cifar_exp.models.stats import ModelSummary, activation_memory, meta_model, summarize
from cifar_exp.records.atomic import write_json
from cifar_exp.registry import typed_options
from cifar_exp.runtime.device import resolve_device
from cifar_exp.training.build import check_num_classes
from cifar_exp.training.precision import Precision

log = logging.getLogger("cifar_exp")


def model_without_data(cfg: DictConfig) -> tuple[ModelOptions, tuple[int, int, int], int]:
    """The checked model options of the run `cfg` describes, its input image shape and
    number of classes, from the dataset's options alone (no image is read)."""
    validate(cfg, ModelSummaryConfig)
    if cfg.get("resume"):
        raise ConfigError(
            f"resume={cfg.resume} continues a run; the tools that take a run's overrides do "
            "not: give the overrides of that run instead (its .hydra/overrides.yaml lists them)"
        )
    data = DATASETS.options(cfg.dataset)
    classes = data.known_classes()
    if classes is None:
        raise ConfigError(
            f"dataset.num_classes=null and {data.name} has no class folders to count under "
            f"its root ({getattr(data, 'root', '?')}); set dataset.num_classes=<classes>"
        )
    completed = OmegaConf.merge(cfg, {"dataset": {"num_classes": classes}})
    check_num_classes(completed.model.num_classes, classes)
    return MODELS.options(completed.model), data.image_shape(), classes


def print_model_summary(cfg: DictConfig, out_dir: Path) -> ModelSummary:
    options = typed_options("model_summary", ModelSummaryOptions, cfg.model_summary)
    model, image_shape, classes = model_without_data(cfg)
    summary = summarize(meta_model(model), image_shape, options.depth, model.name)
    if options.memory:
        summary.activations = measure_activations(cfg, model, image_shape, classes)
    print(format_summary(summary))  # the command's output, not a diagnostic
    write_json(out_dir / "model_summary.json", dataclasses.asdict(summary))
    log.info("wrote %s", out_dir / "model_summary.json")
    return summary


def measure_activations(
    cfg: DictConfig, model: ModelOptions, image_shape: tuple[int, int, int], classes: int
) -> dict:
    """modelstats.activation_memory of one training batch of the run, on its device and in
    its precision, with the model's own weights initialized (pretrained ones not fetched)."""
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = resolve_device(cfg.device.type)
    precision = Precision(t.precision, device)
    torch.manual_seed(t.seed)
    net = MODELS.build(model.without_pretrained()).to(device)
    measured = activation_memory(net, image_shape, t.batch_size, classes, precision.autocast())
    return {**measured, "precision": precision.name}


def count(n: int) -> str:
    return f"{n:,}"


def flops_text(n: int) -> str:
    if n == 0:
        return "0"
    return f"{n / 1e9:,.2f}G" if n >= 1e9 else f"{n / 1e6:,.2f}M"


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def format_summary(summary: ModelSummary) -> str:
    """The table (one row per layer, its name indented by its depth) and the totals."""
    headings = ["layer", "type", "output shape", "params", "frozen", "FLOPs"]
    rows = [
        [
            "  " * (layer.depth - 1) + layer.name,
            layer.kind,
            ", ".join(str(shape) for shape in layer.output_shape) or "-",
            count(layer.trainable),
            count(layer.frozen),
            flops_text(layer.flops),
        ]
        for layer in summary.layers
    ]
    rows.append(
        [
            "total",
            "",
            "",
            count(summary.trainable),
            count(summary.frozen),
            flops_text(summary.flops),
        ]
    )
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(len(headings))]
    right = {3, 4, 5}  # the numbers

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs]
        return "  ".join(padded).rstrip()

    shape = "x".join(str(s) for s in summary.input_shape)
    lines = [line(headings), line(["-" * w for w in widths]), *map(line, rows[:-1])]
    lines += [line(["-" * w for w in widths]), line(rows[-1]), ""]
    lines.append(
        f"{summary.model}: {count(summary.params)} parameters ({count(summary.trainable)} "
        f"trainable, {count(summary.frozen)} frozen; {mib(4 * summary.params)} in fp32), "
        f"{flops_text(summary.flops)} FLOPs per {shape} image (forward pass)"
    )
    memory = summary.activations
    if memory:
        text = (
            f"activation memory of one training batch ({memory['batch_size']} images, "
            f"{memory['device']}, {memory['precision']}): {mib(memory['saved_bytes'])} saved "
            "for the backward pass"
        )
        if "cuda_peak_bytes" in memory:
            text += f"; CUDA peak {mib(memory['cuda_peak_bytes'])} above the weights and batch"
        lines.append(text)
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="model_summary")
def main(cfg: DictConfig) -> None:
    in_output_dir(print_model_summary, cfg)


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
