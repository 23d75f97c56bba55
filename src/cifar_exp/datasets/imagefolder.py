"""Any image folder in the ImageFolder layout, decoded once into uint8 tensors and cached.

    <root>/train/<class>/<image>   <root>/test/<class>/<image>   (optional <root>/val/...)

Every file under a class folder must be an image Pillow can read (any size, any format); it
is converted to RGB and resized to image_size x image_size. The decoded tensors are cached
under cache_dir with a fingerprint of the file list, sizes and mtimes, so a changed folder is
decoded again and an unchanged one loads in about a second.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cifar_exp.datasets.base import DATA_ROOT, DATASETS, DataBundle, DatasetOptions, Split
from cifar_exp.datasets.cache import fingerprint, load_cache, save_cache
from cifar_exp.errors import UserError
from cifar_exp.registry import option, require
from cifar_exp.runtime.progress import INTERVAL_S, ProgressLine

log = logging.getLogger(__name__)


REQUIRED_SPLITS = ("train", "test")
CHUNK = 512  # files per task sent to a decoding worker
# Below this many files, starting worker processes costs more than it saves.
MIN_FILES_FOR_WORKERS = 4 * CHUNK


@dataclass
class ImageFolderOptions(DatasetOptions):
    root: str = option(DATA_ROOT, plumbing=True, resumable=True)
    num_classes: int | None = None  # null: as many as the folder has
    image_size: int = 32
    max_per_class: int | None = None  # keep the first N files (sorted) of each class folder
    skip_bad_files: bool = False
    num_workers: int = option(2, plumbing=True)
    cache_dir: str = option("${oc.env:CIFAR_EXP_CACHE,'~/.cache/cifar-exp'}", plumbing=True)

    def check(self) -> None:
        super().check()
        require(self.image_size >= 1, "image_size", ">= 1", self.image_size)
        ok = self.max_per_class is None or self.max_per_class >= 1
        require(ok, "max_per_class", ">= 1 or null", self.max_per_class)
        require(
            self.num_workers >= 0,
            "num_workers",
            ">= 0 (0 = decode in this process)",
            self.num_workers,
        )

    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def known_classes(self) -> int | None:
        """dataset.num_classes, else the class folders of <root>/train (listed, not read)."""
        if self.num_classes is not None:
            return self.num_classes
        train = Path(self.root).expanduser().absolute() / "train"
        if not train.is_dir():
            return None
        return len(subfolders(train)) or None


@DATASETS.register("imagefolder", ImageFolderOptions)
def imagefolder(o: ImageFolderOptions) -> DataBundle:
    """The folder's splits as uint8 tensors: from the cache if it still matches, else decoded.

    Each (root, image_size, max_per_class, skip_bad_files) gets its own cache file, so
    switching between them does not throw the other decoded versions away.
    """
    root, image_size, max_per_class = o.root, o.image_size, o.max_per_class
    skip_bad_files, num_workers, cache_dir = o.skip_bad_files, o.num_workers, o.cache_dir
    root_path = Path(root).expanduser().absolute()
    classes, listing, stats = scan(root_path, max_per_class)
    settings = {"image_size": image_size, "skip_bad_files": skip_bad_files, "classes": classes}
    key = fingerprint(stats, settings)
    where = f"{root_path}|{image_size}|{max_per_class}|{skip_bad_files}"
    cache_path = (
        Path(cache_dir).expanduser().absolute()
        / f"imagefolder-{root_path.name}-{hashlib.sha256(where.encode()).hexdigest()[:16]}.pt"
    )
    start = time.perf_counter()
    bundle = load_cache(cache_path, key)
    if bundle is not None:
        log.info(
            "loaded %s from the cache %s in %.1fs",
            root_path,
            cache_path,
            time.perf_counter() - start,
        )
    else:
        splits, skipped = decode_splits(
            root_path, classes, listing, image_size, skip_bad_files, num_workers
        )
        train, test, val = splits["train"], splits["test"], splits.get("val")
        bundle = DataBundle(train, test, classes, val, skipped)
        log.info(
            "decoded %d images from %s in %.1fs",
            sum(len(files) for files in listing.values()) - len(bundle.skipped),
            root_path,
            time.perf_counter() - start,
        )
        save_cache(cache_path, key, bundle)
    if bundle.skipped:
        shown = ", ".join(bundle.skipped[:5]) + (", ..." if len(bundle.skipped) > 5 else "")
        log.warning(
            "skipped %d unreadable files (dataset.skip_bad_files=true): %s",
            len(bundle.skipped),
            shown,
        )
    return bundle


def scan(
    root: Path, max_per_class: int | None
) -> tuple[list[str], dict[str, list[tuple[int, str]]], list[tuple[str, os.stat_result]]]:
    """The classes (train/'s folders, sorted), each split's (label, relative path) list, and
    the (relative path, stat) of every file listed."""
    layout = f"{root}/train/<class>/<images> and {root}/test/<class>/<images>"
    if not root.is_dir():
        raise UserError(
            f"no image folder at {root}: dataset=imagefolder needs {layout}. Fix: set "
            "dataset.root=<folder> (or $CIFAR_EXP_DATA) to a folder laid out like that."
        )
    for split in REQUIRED_SPLITS:
        if not (root / split).is_dir():
            raise UserError(
                f"{root} has no {split}/ folder: dataset=imagefolder needs {layout}. Fix: "
                "create it or point dataset.root=... at the folder that holds train/ and test/."
            )
    splits = [s for s in ("train", "val", "test") if (root / s).is_dir()]
    classes = subfolders(root / "train")
    if not classes:
        raise UserError(
            f"{root / 'train'} has no class folders; put each class's images in train/<class>/"
        )
    listing: dict[str, list[tuple[int, str]]] = {}
    stats: list[tuple[str, os.stat_result]] = []
    for split in splits:
        found = subfolders(root / split)
        if found != classes:
            only_train, only_here = differences(classes, found)
            raise UserError(
                f"{root / split} and {root / 'train'} have different class folders (only in "
                f"train/: {only_train}; only in {split}/: {only_here}). Every split needs the "
                "same classes: add or remove folders so they match."
            )
        files = []
        for label, name in enumerate(classes):
            entries = sorted(image_files(root, f"{split}/{name}"))[:max_per_class]
            if not entries:
                raise UserError(
                    f"class folder {root / split / name} is empty; add images to it or remove "
                    "that class from every split."
                )
            files += [(label, relative) for relative, _ in entries]
            stats += entries
        listing[split] = files
    return classes, listing, stats


def differences(expected: list[str], found: list[str]) -> tuple[list[str] | str, ...]:
    """What only `expected` has, and what only `found` has ("none" for nothing)."""
    return (
        sorted(set(expected) - set(found)) or "none",
        sorted(set(found) - set(expected)) or "none",
    )


def subfolders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(root: Path, folder: str) -> list[tuple[str, os.stat_result]]:
    """(path relative to root, stat) of every non-hidden file below root/folder.

    Hidden files and folders are OS or editor droppings, not images. Plain strings and
    os.scandir keep this fast on folders of tens of thousands of files.
    """
    found = []
    pending = [folder]
    while pending:
        relative = pending.pop()
        with os.scandir(root / relative) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append(f"{relative}/{entry.name}")
                else:
                    found.append((f"{relative}/{entry.name}", entry.stat()))
    return found


def class_folders(root: Path, image_size: int) -> tuple[list[str], Split]:
    """Every image below root/<class>/ as one split, labelled by its folder (sorted): an
    extra test set such as CIFAR-10.1 or CINIC-10's test/. Not cached; unreadable files stop
    it with their name."""
    if not root.is_dir():
        raise UserError(f"no test folder at {root}: it needs {root}/<class>/<images>")
    classes = subfolders(root)
    if not classes:
        raise UserError(f"{root} has no class folders; an extra test set needs {root}/<class>/")
    files = []
    for label, name in enumerate(classes):
        entries = sorted(image_files(root, name))
        if not entries:
            raise UserError(f"class folder {root / name} is empty; add images or remove it")
        files += [(label, relative) for relative, _ in entries]
    splits, _ = decode_splits(root, classes, {"test": files}, image_size, False, 0)
    return classes, splits["test"]


def decode_splits(
    root: Path,
    classes: list[str],
    listing: dict[str, list[tuple[int, str]]],
    image_size: int,
    skip_bad_files: bool,
    num_workers: int,
    interval: float = INTERVAL_S,
) -> tuple[dict[str, Split], list[str]]:
    """The listed files decoded into uint8 splits, and the files skipped; a bar on a
    terminal, else a progress line in the log every `interval` seconds."""
    total = sum(len(files) for files in listing.values())
    log.info("decoding %d images from %s (once; later starts use the cache)", total, root)
    splits: dict[str, Split] = {}
    skipped: list[str] = []
    terminal = sys.stdout.isatty()  # a bar there; elsewhere (a log file) a line every 30 s
    line = ProgressLine("decoding images", total, 0 if terminal else interval)
    with tqdm(
        total=total, unit="img", desc="decoding", disable=not terminal, file=sys.stdout
    ) as bar:
        for split, files in listing.items():
            paths = [str(root / name) for _, name in files]
            images = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
            keep = np.ones(len(paths), dtype=bool)
            offsets = range(0, len(paths), CHUNK)
            chunks = decode_chunks(paths, image_size, num_workers)
            for offset, (decoded, bad) in zip(offsets, chunks, strict=True):
                images[offset : offset + len(decoded)] = decoded
                for index, reason in bad:
                    name = files[offset + index][1]
                    if not skip_bad_files:
                        raise UserError(
                            f"cannot read {root / name} as an image ({reason}). Fix: remove or "
                            "replace the file, or set dataset.skip_bad_files=true to skip such "
                            "files."
                        )
                    keep[offset + index] = False
                    skipped.append(name)
                bar.update(len(decoded))
                line.advance(len(decoded))
            labels = np.array([label for label, _ in files], dtype=np.int64)[keep]
            for label in set(range(len(classes))) - set(labels.tolist()):
                raise UserError(
                    f"class folder {root / split / classes[label]} has no readable images; "
                    "add some or remove that class from every split."
                )
            splits[split] = Split(torch.from_numpy(images[keep]), torch.from_numpy(labels))
    return splits, skipped


def decode_chunks(
    paths: list[str], image_size: int, num_workers: int
) -> Iterator[tuple[np.ndarray, list[tuple[int, str]]]]:
    """decode_chunk over CHUNK-sized slices of paths, in order, in worker processes if useful."""
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    if num_workers <= 1 or len(paths) < MIN_FILES_FOR_WORKERS or sys.platform != "linux":
        yield from map(decode_chunk, chunks, repeat(image_size))
        return
    # Workers run only Pillow and numpy, so forking them is safe on Linux and starts them in
    # milliseconds; spawned workers would first import torch and the entrypoint, which on
    # 2 cores made decoding CIFAR-10 slower than doing it in this process (5.2k vs 6.7k
    # images/s; forked: 12.5k). Elsewhere fork is unsafe, so decoding stays in-process.
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(num_workers, mp_context=context)
    try:
        yield from pool.map(decode_chunk, chunks, repeat(image_size))
    finally:  # after a bad file, drop the queued chunks instead of decoding them
        pool.shutdown(wait=True, cancel_futures=True)


def decode_chunk(paths: list[str], image_size: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """uint8 [len(paths), 3, S, S] images and the (index, reason) of files that failed."""
    images = np.zeros((len(paths), 3, image_size, image_size), dtype=np.uint8)
    bad = []
    errors = decode_errors()
    for i, path in enumerate(paths):
        try:
            images[i] = decode_image(path, image_size)
        except errors as err:
            bad.append((i, f"{type(err).__name__}: {err}"))
    return images, bad


def decode_errors() -> tuple[type[Exception], ...]:
    """What decoding a damaged or hostile image file raises (PIL loads where images are read)."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_image(path: str, image_size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1)
