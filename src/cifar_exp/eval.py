"""`python -m cifar_exp.eval ckpt=<checkpoint or run dir>`: score a checkpoint.

Evaluates on the test split of the data set the checkpoint was trained on: loss (NLL),
accuracy, top-5, calibration (ECE, Brier), per-class precision/recall/F1 and the confusion
matrix, printed as tables and written to `eval.json`, `confusion_matrix.png`,
`reliability.png` and `gradcam.png` (what the model looked at in its most confident
mistakes, also in the folder's TensorBoard events) in the eval's own output folder. On
request, robustness to corruptions and on other test sets (training/robustness.py):
`robustness.json` and `robustness.png`. docs/evaluation.md shows them all.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import unicodedata
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_exp.components import calibration
from cifar_exp.components.attribution import EXTRA, gradcam
from cifar_exp.components.tta import tta_logits
from cifar_exp.config import EvalConfig, check_entrypoint
from cifar_exp.datasets import DataBundle, Split, load_dataset
from cifar_exp.datasets.augment import eval_transform
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import UserError
from cifar_exp.hydra_setup import CONFIG_DIR, in_output_dir, setup_hydra
from cifar_exp.records.atomic import write_json
from cifar_exp.records.checkpoint import find_checkpoint
from cifar_exp.runtime.device import resolve_device
from cifar_exp.runtime.progress import INTERVAL_S
from cifar_exp.tracking.pictures import (
    GRADCAM_TAG,
    MISCLASSIFIED_TAG,
    EvalDetails,
    attention_tiles,
    displayable,
    misclassified_figure,
)
from cifar_exp.training.engine import evaluate
from cifar_exp.training.inference import load_trained, required
from cifar_exp.training.robustness import (
    format_robustness,
    plot_robustness,
    prepare,
    robustness,
)

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


def format_per_class(per_class: dict[str, dict[str, float]]) -> str:
    """One line per class, its name padded to the longest: precision, recall, F1, images."""
    width = max(text_width(name) for name in per_class)
    lines = [f"  {pad_right('class', width)}  precision  recall      F1  images"]
    lines += [
        f"  {pad_right(name, width)}  {r['precision']:>9.4f}  {r['recall']:>6.4f}  "
        f"{r['f1']:>6.4f}  {r['images']:>6}"
        for name, r in per_class.items()
    ]
    return "\n".join(lines)


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
    classes = list(state["classes"])
    data = checkpoint_data(run_cfg, classes, cfg.dataset_root)
    shifts = prepare(cfg, data.test, classes)  # robustness inputs: checked before scoring
    transform = eval_transform(OmegaConf.to_container(run_cfg.augment, resolve=True))
    loader = BatchLoader(data.test, cfg.batch_size, device, transform=transform)
    details = EvalDetails(keep=cfg.gradcam)  # the most confident mistakes, for Grad-CAM
    temperature = None
    if cfg.calibrate == "temperature":
        temperature = fitted_temperature(model, data.val, transform, cfg, device)
        model = calibration.Scaled(model, temperature["value"])
        temperature["before"] = evaluate(model.model, loader, tta=cfg.tta)
    scores = evaluate(model, loader, details=details, tta=cfg.tta, progress_s=INTERVAL_S)
    matrix = details.confusion
    total = int(matrix.sum())
    per_class = per_class_scores(matrix, classes)
    results = {
        "checkpoint": str(find_checkpoint(spec)),
        "epoch": state["progress"]["epoch"],
        "split": "test",
        "tta": cfg.tta,
        "images": total,
        "loss": scores["loss"],
        "nll": scores["loss"],  # the loss is the cross-entropy, without label smoothing
        "acc": scores["acc"],
        **{key: scores[key] for key in ("top5_acc", "ece", "brier") if key in scores},
        "ece_bins": calibration.ECE_BINS,
        "classes": classes,
        "per_class_acc": {name: row["recall"] for name, row in per_class.items()},
        "per_class": per_class,
        **macro_averages(per_class),
        "reliability": calibration.reliability(details.calibration),
        "confusion_matrix": matrix.tolist(),
    }
    if temperature is not None:
        results["temperature"] = temperature
    write_json(out_dir / "eval.json", results)
    title = f"{run_cfg.model.name}, epoch {results['epoch']}"
    plot_confusion(
        matrix, classes, out_dir / "confusion_matrix.png", f"{title}: test acc {results['acc']:.4f}"
    )
    plot_reliability(results, out_dir / "reliability.png", title)
    print_report(results)
    written = ["eval.json", "confusion_matrix.png", "reliability.png"]
    written += look_closer(model, details, transform, classes, out_dir, results["epoch"])
    # after calibrate=temperature, the corrupted sets are scored with the temperature too
    if shifts is not None:
        shifted = robustness(model, shifts, transform, cfg, results)
        written += write_robustness(shifted, out_dir, title)
    log.info("wrote %s in %s", ", ".join(written), out_dir)
    return results


def checkpoint_data(run_cfg: DictConfig, classes: list[str], root: str | None) -> DataBundle:
    """The data set the checkpoint was trained on (at `root` if it moved), which must hold
    the checkpoint's classes."""
    dataset = OmegaConf.to_container(run_cfg.dataset, resolve=True)
    dataset["num_classes"] = None  # eval has no such key: the classes are compared below
    if root is not None:
        dataset["root"] = root
    data = load_dataset(dataset)
    if data.classes != classes:
        where = f"dataset_root={root}" if root else "the data set"
        raise UserError(
            f"{where} has the classes {data.classes}, the checkpoint was trained on "
            f"{classes}; give a dataset_root that holds the checkpoint's classes"
        )
    return data


def write_robustness(shifted: dict[str, Any], out_dir: Path, title: str) -> list[str]:
    write_json(out_dir / "robustness.json", shifted)
    print(format_robustness(shifted))
    if "corruptions" not in shifted:
        return ["robustness.json"]
    plot_robustness(shifted, out_dir / "robustness.png", title)
    return ["robustness.json", "robustness.png"]


def look_closer(
    model: torch.nn.Module,
    details: EvalDetails,
    transform: Any,
    classes: list[str],
    out_dir: Path,
    epoch: int,
) -> list[str]:
    """gradcam.png, and the same picture with the mistakes themselves in the eval folder's
    TensorBoard events (`tensorboard --logdir <eval folder>`): what was written."""
    if not len(details.confidence):
        return []
    if importlib.util.find_spec("captum") is None:
        log.warning("no Grad-CAM pictures: they need captum (%s); gradcam=0 turns them off", EXTRA)
        return []
    device = next(model.parameters()).device
    maps = gradcam(model, details.images.to(device), details.predicted.to(device)).cpu()
    shown = displayable(details.images, transform)
    mistakes = (details.true, details.predicted, details.confidence, classes)
    figure = misclassified_figure(attention_tiles(shown, maps), *mistakes)
    figure.savefig(out_dir / "gradcam.png", dpi=100)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out_dir)) as writer:
        writer.add_figure(GRADCAM_TAG, figure, epoch)
        writer.add_figure(MISCLASSIFIED_TAG, misclassified_figure(shown, *mistakes), epoch)
    return ["gradcam.png", "TensorBoard events"]


@torch.no_grad()
def fitted_temperature(
    model: Any, val: Split | None, transform: Any, cfg: DictConfig, device: torch.device
) -> dict[str, Any]:
    """calibrate=temperature: the temperature fitted on the run's validation split."""
    if val is None:
        raise UserError(
            "calibrate=temperature fits on the validation split, and this run held none out "
            "(dataset.val_size=0); fitting on the test split would report a test score tuned "
            "on itself. Train with dataset.val_size=5000 (for instance), or drop calibrate"
        )
    loader = BatchLoader(val, cfg.batch_size, device, transform=transform)
    batches = [(tta_logits(model, images, cfg.tta).float(), labels) for images, labels in loader]
    logits, labels = (torch.cat(parts) for parts in zip(*batches, strict=True))
    with torch.enable_grad():
        value = calibration.fit_temperature(logits, labels)
    log.info("temperature %.4f fitted on %d validation images", value, len(labels))
    return {"value": value, "val_images": len(labels)}


def per_class_scores(matrix: torch.Tensor, classes: list[str]) -> dict[str, dict[str, float]]:
    """Per class (rows of `matrix` true, columns predicted): precision, recall (its
    accuracy) and F1; 0 where a class was never predicted or never present."""
    hits = matrix.diag().double()
    precision = hits / matrix.sum(0).clamp(min=1)
    recall = hits / matrix.sum(1).clamp(min=1)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros(1)
    )
    return {
        name: {"precision": p, "recall": r, "f1": f, "images": int(n)}
        for name, p, r, f, n in zip(
            classes,
            precision.tolist(),
            recall.tolist(),
            f1.tolist(),
            matrix.sum(1).tolist(),
            strict=True,
        )
    }


def macro_averages(per_class: dict[str, dict[str, float]]) -> dict[str, float]:
    """The unweighted mean over classes of precision, recall and F1."""
    rows = list(per_class.values())
    return {
        f"macro_{k}": sum(r[k] for r in rows) / len(rows) for k in ("precision", "recall", "f1")
    }


def print_report(results: dict[str, Any]) -> None:
    """The report is this command's output, so it goes to stdout as plain text."""
    top5 = f"  top-5 {results['top5_acc']:.4f}" if "top5_acc" in results else ""
    print(
        f"test loss (NLL) {results['loss']:.4f}  accuracy {results['acc']:.4f}{top5}  "
        f"({results['images']} images, test-time augmentation: {results['tta']})"
    )
    print(
        f"calibration: ECE {results['ece']:.4f} ({results['ece_bins']} equal-width bins)  "
        f"Brier {results['brier']:.4f}"
    )
    if "temperature" in results:
        t = results["temperature"]
        print(
            f"temperature {t['value']:.4f} (fitted on {t['val_images']} validation images): "
            f"ECE {t['before']['ece']:.4f} -> {results['ece']:.4f}, NLL {t['before']['loss']:.4f} "
            f"-> {results['loss']:.4f}; the scores above and below are after it"
        )
    print(
        f"macro precision {results['macro_precision']:.4f}  recall {results['macro_recall']:.4f}"
        f"  F1 {results['macro_f1']:.4f}"
    )
    print(format_per_class(results["per_class"]))
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_table(torch.tensor(results["confusion_matrix"]), results["classes"]))


def plot_reliability(results: dict[str, Any], path: Path, title: str) -> None:
    """The reliability diagram: each bin's accuracy against its mean confidence, the
    diagonal a perfectly calibrated model; bar widths are the bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = results["reliability"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    width = 1 / results["ece_bins"]
    lows = [b["low"] for b in bins]
    ax.bar(
        lows,
        [b["accuracy"] for b in bins],
        width=width,
        align="edge",
        color="C0",
        edgecolor="white",
        label="accuracy in the bin",
    )
    ax.bar(
        lows,
        [b["confidence"] - b["accuracy"] for b in bins],
        bottom=[b["accuracy"] for b in bins],
        width=width,
        align="edge",
        color="C3",
        alpha=0.35,
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: ECE {results['ece']:.4f}, test acc {results['acc']:.4f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> float:
    return in_output_dir(evaluate_checkpoint, cfg)["acc"]


if __name__ == "__main__":
    setup_hydra(sys.argv[1:])
    main()
