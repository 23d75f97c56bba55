"""`python -m cifar_exp.eval ckpt=<checkpoint or run dir>`: score a checkpoint.

Evaluates on the test split of the data set the checkpoint was trained on: loss, accuracy,
per-class accuracy and the confusion matrix, printed as tables and written to `eval.json`
and `confusion_matrix.png` in the eval's own output folder.
"""

from __future__ import annotations

import logging
import sys
import unicodedata
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_exp.config import EvalConfig, check_entrypoint
from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.augment import eval_transform
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import UserError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.records.atomic import write_json
from cifar_exp.records.checkpoint import find_checkpoint
from cifar_exp.runtime.device import resolve_device
from cifar_exp.runtime.progress import INTERVAL_S
from cifar_exp.tracking.pictures import EvalDetails
from cifar_exp.training.engine import evaluate
from cifar_exp.training.inference import load_trained, required

log = logging.getLogger("cifar_exp")


def text_width(text: str) -> int:
    """The columns `text` takes on a terminal: wide and full-width characters (CJK) two,
    combining marks none, every other character one."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def pad_left(text: str, width: int) -> str:
    return " " * (width - text_width(text)) + text


def pad_right(text: str, width: int) -> str:
    return text + " " * (width - text_width(text))


def format_table(matrix: torch.Tensor, classes: list[str]) -> str:
    """The confusion matrix as text: rows are true classes, columns predicted ones. Every
    column is as wide as the longest class name (names are never cut), two spaces apart."""
    header = "true \\ predicted"
    first = max(text_width(header), *(text_width(name) for name in classes))
    width = max(len(str(int(matrix.max()))), *(text_width(name) for name in classes))
    lines = [pad_right(header, first) + "".join("  " + pad_left(n, width) for n in classes)]
    for name, row in zip(classes, matrix.tolist(), strict=True):
        lines.append(pad_right(name, first) + "".join("  " + pad_left(str(v), width) for v in row))
    return "\n".join(lines)


def format_per_class(per_class_acc: dict[str, float]) -> str:
    """One line per class, its name padded to the longest: `  <name>  <accuracy>`."""
    width = max(text_width(name) for name in per_class_acc)
    return "\n".join(
        f"  {pad_right(name, width)}  {acc:.4f}" for name, acc in per_class_acc.items()
    )


def plot_confusion(matrix: torch.Tensor, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = matrix.double() / matrix.sum(1, keepdim=True).clamp(min=1)
    size = max(5.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(classes) <= 20:
        for i in ticks:
            for j in ticks:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_checkpoint(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    spec = required(cfg, "ckpt", "python -m cifar_exp.eval ckpt=<checkpoint or run dir>")
    check_entrypoint(EvalConfig, cfg)
    device = resolve_device(cfg.device)
    model, run_cfg, state = load_trained(spec, device)
    dataset = OmegaConf.to_container(run_cfg.dataset, resolve=True)
    dataset["num_classes"] = None  # eval has no such key: the classes are compared below
    classes = list(state["classes"])
    if cfg.dataset_root is not None:
        dataset["root"] = cfg.dataset_root
    data = load_dataset(dataset)
    if data.classes != classes:
        where = f"dataset_root={cfg.dataset_root}" if cfg.dataset_root else "the data set"
        raise UserError(
            f"{where} has the classes {data.classes}, the checkpoint was trained on "
            f"{classes}; give a dataset_root that holds the checkpoint's classes"
        )
    transform = eval_transform(OmegaConf.to_container(run_cfg.augment, resolve=True))
    loader = BatchLoader(data.test, cfg.batch_size, device, transform=transform)
    # keep=0: eval reports the confusion matrix, not the worst mistakes' pictures.
    details = EvalDetails(keep=0)
    scores = evaluate(model, loader, details=details, tta=cfg.tta, progress_s=INTERVAL_S)
    matrix = details.confusion
    total = int(matrix.sum())
    per_class = (matrix.diag().double() / matrix.sum(1).clamp(min=1)).tolist()
    results = {
        "checkpoint": str(find_checkpoint(spec)),
        "epoch": state["progress"]["epoch"],
        "split": "test",
        "tta": cfg.tta,
        "images": total,
        "loss": scores["loss"],
        "acc": scores["acc"],
        "classes": classes,
        "per_class_acc": dict(zip(classes, per_class, strict=True)),
        "confusion_matrix": matrix.tolist(),
    }
    write_json(out_dir / "eval.json", results)
    plot_confusion(
        matrix,
        classes,
        out_dir / "confusion_matrix.png",
        f"{run_cfg.model.name}, epoch {results['epoch']}: test acc {results['acc']:.4f}",
    )
    # The report is this command's output, so it goes to stdout as plain text.
    print(
        f"test loss {results['loss']:.4f}  accuracy {results['acc']:.4f}  ({total} images, "
        f"test-time augmentation: {cfg.tta})"
    )
    print("per-class accuracy:")
    print(format_per_class(results["per_class_acc"]))
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_table(matrix, classes))
    log.info("wrote %s and %s", out_dir / "eval.json", out_dir / "confusion_matrix.png")
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    return in_output_dir(evaluate_checkpoint, cfg)["acc"]


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
