"""`eval`'s robustness scores: CIFAR-10-C's corruptions of the test split, and extra test sets.

- `corruptions=all` (or a list, e.g. `[fog,snow]`) at `severities`: each (corruption,
  severity) a corrupted copy of the test split (or of a class-balanced part of it,
  `corruption_images`), made by datasets/corruptions.py and cached under
  `<cache_dir>/corruptions/`, or read from the published CIFAR-10-C .npy files
  (`cifar10c_dir`). Scored like the clean split: accuracy, NLL, ECE, Brier.
- `test_folders=[...]`: other test sets with the checkpoint's classes (CIFAR-10.1, CINIC-10's
  test split), each `<folder>/<class>/<images>`.

Output: `robustness.json` (every score, the means over corruptions and severities),
`robustness.png` (the accuracy and ECE heat-maps) and a table on stdout.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from cifar_exp.datasets.base import Split
from cifar_exp.datasets.batches import BatchLoader, BatchTransform
from cifar_exp.datasets.subsets import stratified_subset
from cifar_exp.errors import UserError
from cifar_exp.records.atomic import write_bytes_atomically
from cifar_exp.runtime.progress import INTERVAL_S, ProgressLine
from cifar_exp.training.engine import evaluate

log = logging.getLogger("cifar_exp")

# Bump when datasets/corruptions.py changes the images it makes: old cache files go unused.
DEFINITIONS = 1
SCORES = ("acc", "loss", "ece", "brier", "top5_acc")
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def score(model: torch.nn.Module, split: Split, transform: Any, cfg: DictConfig) -> dict:
    device = next(model.parameters()).device
    loader = BatchLoader(split, cfg.batch_size, device, transform=transform)
    scores = evaluate(model, loader, tta=cfg.tta)
    return {key: scores[key] for key in SCORES if key in scores}


@dataclass
class Shifts:
    """What eval scores beyond the clean split, read and checked before anything is scored."""

    names: list[str]  # the corruptions asked for
    corrupted: Iterator[tuple[str, int, Split]] | None  # (corruption, severity, images)
    folders: dict[str, Split]  # extra test sets by the name given
    about: dict[str, Any]  # where the corruptions come from


def prepare(cfg: DictConfig, test: Split, classes: list[str]) -> Shifts | None:
    """The shifted test sets `cfg` asks for (None: none), every input checked now, so that a
    bad one costs one line before the clean evaluation, not after it."""
    from cifar_exp.datasets.corruptions import corruption_names  # scipy, Pillow: when used

    names = corruption_names(cfg.corruptions)
    if cfg.cifar10c_dir is not None and not names:
        raise UserError(
            "cifar10c_dir names where CIFAR-10-C's files are; say which to score: "
            "corruptions=all (or a list such as [fog,snow])"
        )
    if not names and not cfg.test_folders:
        return None
    corrupted, about = None, {}
    if names and cfg.cifar10c_dir is None:
        corrupted = made_sets(test, names, list(cfg.severities), cfg)
        about = {"source": "made on the fly (datasets/corruptions.py)", "seed": cfg.corruption_seed}
    elif names:
        root = Path(cfg.cifar10c_dir).expanduser()
        corrupted = published_sets(root, classes, names, list(cfg.severities), cfg)
        about = {"source": str(cfg.cifar10c_dir), "seed": None}
    size = test.images.shape[-1]
    folders = {f: read_test_folder(Path(f).expanduser(), classes, size) for f in cfg.test_folders}
    return Shifts(names, corrupted, folders, about)


def robustness(
    model: torch.nn.Module,
    shifts: Shifts,
    transform: BatchTransform | None,
    cfg: DictConfig,
    clean: dict[str, Any],
) -> dict[str, Any]:
    """Every score of the shifted test sets, beside the clean split's."""
    results: dict[str, Any] = {"clean": {key: clean[key] for key in SCORES if key in clean}}
    if shifts.corrupted is not None:
        results.update(shifts.about)
        results.update(corruption_scores(model, shifts, transform, cfg))
    folders = {}
    for folder, split in shifts.folders.items():
        folders[folder] = {"images": len(split), **score(model, split, transform, cfg)}
        log.info("%s: accuracy %.4f on %d images", folder, folders[folder]["acc"], len(split))
    if folders:
        results["test_folders"] = folders
    return results


def corruption_scores(
    model: torch.nn.Module,
    shifts: Shifts,
    transform: BatchTransform | None,
    cfg: DictConfig,
) -> dict[str, Any]:
    assert shifts.corrupted is not None
    severities = list(cfg.severities)
    table: dict[str, dict[str, dict]] = {}
    line = ProgressLine("corruptions", len(shifts.names) * len(severities), INTERVAL_S)
    images = 0
    for name, severity, split in shifts.corrupted:
        scores = score(model, split, transform, cfg)
        table.setdefault(name, {})[str(severity)] = scores
        images = len(split)
        line.advance(detail=f"{name} severity {severity}: accuracy {scores['acc']:.4f}")
    cells = [cell for row in table.values() for cell in row.values()]
    mean = {key: float(np.mean([c[key] for c in cells])) for key in ("acc", "ece", "loss")}
    return {
        "severities": severities,
        "images": images,
        "corruptions": table,
        "mean_corruption_acc": mean["acc"],
        "mean_corruption_error": 1 - mean["acc"],
        "mean_corruption_ece": mean["ece"],
        "mean_corruption_nll": mean["loss"],
        "per_corruption_acc": {
            name: float(np.mean([c["acc"] for c in row.values()])) for name, row in table.items()
        },
        "per_severity_acc": {
            str(s): float(np.mean([row[str(s)]["acc"] for row in table.values()]))
            for s in severities
        },
    }


def made_sets(
    test: Split, names: list[str], severities: list[int], cfg: DictConfig
) -> Iterator[tuple[str, int, Split]]:
    from cifar_exp.datasets.corruptions import check_images, corrupt, frost_pictures

    check_images(test.images)
    if "frost" in names:
        frost_pictures()  # its photographs are there, or one line now
    index = torch.arange(len(test))
    if cfg.corruption_images is not None:
        index = stratified_subset(test.labels, cfg.corruption_images, cfg.corruption_seed)
    images, labels = test.images[index], test.labels[index]
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(f"{index.tolist()}|{cfg.corruption_seed}|{DEFINITIONS}".encode())
    cache = Path(cfg.cache_dir).expanduser() / "corruptions" / digest.hexdigest()[:16]

    def made() -> Iterator[tuple[str, int, Split]]:
        folder: Path | None = cache
        for name in names:
            for severity in severities:
                path = None if folder is None else folder / f"{name}-{severity}.npy"
                corrupted = None if path is None else load_cached(path, images.shape)
                if corrupted is None:
                    corrupted = corrupt(images, name, severity, cfg.corruption_seed, index)
                    if path is not None and not save_cached(path, corrupted):
                        folder = None  # said once; made again next time
                yield name, severity, Split(corrupted, labels)

    return made()


def load_cached(path: Path, shape: torch.Size) -> torch.Tensor | None:
    try:
        array = np.load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # cut short or not an array: make it again
        log.warning("remaking %s: the cached file is damaged (%s)", path, err)
        return None
    if tuple(array.shape) != tuple(shape) or array.dtype != np.uint8:
        log.warning("remaking %s: the cached file holds other images", path)
        return None
    return torch.from_numpy(array)


def save_cached(path: Path, images: torch.Tensor) -> bool:
    """Whether the images could be cached (a cache that cannot be written costs time only)."""
    buffer = io.BytesIO()
    np.save(buffer, images.numpy())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, buffer.getvalue())
    except (OSError, UserError) as err:
        log.warning("not caching corrupted images (%s): they will be made again next time", err)
        return False
    return True


def published_sets(
    root: Path, classes: list[str], names: list[str], severities: list[int], cfg: DictConfig
) -> Iterator[tuple[str, int, Split]]:
    """CIFAR-10-C's own files: `<name>.npy` uint8 [5 N, 32, 32, 3], severity s in rows
    (s-1) N to s N, and `labels.npy`."""
    if classes != CIFAR10_CLASSES:
        raise UserError(
            f"cifar10c_dir holds CIFAR-10-C, whose classes are CIFAR-10's {CIFAR10_CLASSES}; "
            f"the checkpoint was trained on {classes}"
        )
    labels = torch.from_numpy(read_array(root / "labels.npy").astype(np.int64))
    if len(labels) % 5:
        raise UserError(f"{root / 'labels.npy'} has {len(labels)} labels, not 5 severities' worth")
    n = len(labels) // 5
    index = torch.arange(n)
    if cfg.corruption_images is not None:
        index = stratified_subset(labels[:n], cfg.corruption_images, cfg.corruption_seed)
    arrays = {name: read_array(root / f"{name}.npy") for name in names}
    for name, array in arrays.items():
        if array.shape != (5 * n, 32, 32, 3) or array.dtype != np.uint8:
            raise UserError(
                f"{root / f'{name}.npy'} holds {array.dtype} {array.shape}; CIFAR-10-C's files "
                f"are uint8 ({5 * n}, 32, 32, 3), as its labels.npy says"
            )

    def read() -> Iterator[tuple[str, int, Split]]:
        for name, array in arrays.items():
            for severity in severities:
                rows = (severity - 1) * n + index
                images = torch.from_numpy(np.ascontiguousarray(array[rows.numpy()]))
                yield name, severity, Split(images.permute(0, 3, 1, 2).contiguous(), labels[rows])

    return read()


def read_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise UserError(
            f"no {path.name} in {path.parent}: cifar10c_dir needs CIFAR-10-C's <corruption>.npy "
            "and labels.npy files"
        ) from None
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} as a .npy array ({err})") from None


def read_test_folder(root: Path, classes: list[str], size: int) -> Split:
    from cifar_exp.datasets.imagefolder import class_folders, differences

    found, split = class_folders(root, size)
    if found == classes:
        return split
    missing, extra = differences(classes, found)
    raise UserError(
        f"test folder {root} has the classes {found}, the checkpoint was trained on {classes} "
        f"(missing: {missing}; not the checkpoint's: {extra}); an extra test set needs the "
        "same class folders"
    )


def format_robustness(results: dict[str, Any]) -> str:
    clean = results["clean"]
    lines = [f"clean test: accuracy {clean['acc']:.4f}  ECE {clean['ece']:.4f}"]
    if "corruptions" in results:
        severities = results["severities"]
        width = max(len(name) for name in results["corruptions"])
        head = "".join(f"  {'sev ' + str(s):>7}" for s in severities)
        lines.append(f"corruption accuracy ({results['images']} images each, {results['source']}):")
        lines.append(f"  {'corruption':<{width}}{head}     mean")
        for name, row in results["corruptions"].items():
            cells = "".join(f"  {row[str(s)]['acc']:>7.4f}" for s in severities)
            mean = results["per_corruption_acc"][name]
            lines.append(f"  {name:<{width}}{cells}  {mean:>7.4f}")
        cells = "".join(f"  {results['per_severity_acc'][str(s)]:>7.4f}" for s in severities)
        lines.append(f"  {'mean':<{width}}{cells}  {results['mean_corruption_acc']:>7.4f}")
        lines.append(
            f"mean corruption accuracy {results['mean_corruption_acc']:.4f} (error "
            f"{results['mean_corruption_error']:.4f}), ECE {results['mean_corruption_ece']:.4f}"
        )
    for folder, scores in results.get("test_folders", {}).items():
        lines.append(
            f"{folder}: accuracy {scores['acc']:.4f}  ECE {scores['ece']:.4f} "
            f"({scores['images']} images)"
        )
    return "\n".join(lines)


def plot_robustness(results: dict[str, Any], path: Path, title: str) -> None:
    """Accuracy and ECE per corruption (rows) and severity (columns), means last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, severities = list(results["corruptions"]), results["severities"]
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(severities), 2 + 0.4 * len(names)))
    for ax, key, cmap in zip(axes, ("acc", "ece"), ("viridis", "magma_r"), strict=True):
        grid = np.array(
            [[results["corruptions"][n][str(s)][key] for s in severities] for n in names]
        )
        grid = np.vstack([np.c_[grid, grid.mean(1)], np.r_[grid.mean(0), grid.mean()]])
        top = max(grid.max(), results["clean"][key])  # the colours span 0 to the clean score
        image = ax.imshow(grid, cmap=cmap, vmin=0, vmax=top)
        for (i, j), value in np.ndenumerate(grid):
            shade = image.cmap(image.norm(value))
            color = "black" if sum(shade[:3]) > 1.5 else "white"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(len(severities) + 1), [*map(str, severities), "mean"])
        ax.set_yticks(range(len(names) + 1), [*names, "mean"])
        ax.axhline(len(names) - 0.5, color="white", linewidth=2)
        ax.axvline(len(severities) - 0.5, color="white", linewidth=2)
        ax.set_xlabel("severity")
        ax.set_title(
            f"accuracy (clean {results['clean']['acc']:.3f})"
            if key == "acc"
            else f"ECE (clean {results['clean']['ece']:.3f})"
        )
    fig.suptitle(
        f"{title}: mean corruption accuracy {results['mean_corruption_acc']:.3f}, "
        f"ECE {results['mean_corruption_ece']:.3f} ({results['images']} images each)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
