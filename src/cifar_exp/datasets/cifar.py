"""CIFAR-10 and CIFAR-100 from the official archives (the ones torchvision downloads).

The archive is downloaded under a temporary name and renamed only once its size and MD5
match, and extracted into a temporary folder renamed when complete, so an interrupted or
corrupted download never looks valid. Extracted files are MD5-checked before they are read;
the decoded tensors are then cached next to them, so later starts skip both steps.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import sys
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cifar_exp.datasets.base import DATA_ROOT, DATASETS, DataBundle, DatasetOptions, Split
from cifar_exp.datasets.cache import fingerprint, load_cache, save_cache
from cifar_exp.errors import UserError
from cifar_exp.registry import option
from cifar_exp.runtime.progress import ProgressLine

log = logging.getLogger(__name__)

CACHE_NAME = "cifar-exp-cache.pt"


@dataclass
class Cifar10Options(DatasetOptions):
    root: str = option(DATA_ROOT, plumbing=True, resumable=True)
    download: bool = option(True, plumbing=True, resumable=True)
    cache: bool = option(True, plumbing=True)


@dataclass
class Cifar100Options(Cifar10Options):
    num_classes: int | None = 100


@dataclass(frozen=True)
class Archive:
    """Where an archive lives, what it must hash to, and what it holds."""

    title: str
    url: str
    filename: str
    size: int
    md5: str
    folder: str  # the folder the archive extracts to
    train_files: tuple[tuple[str, str], ...]  # (file name, MD5)
    test_files: tuple[tuple[str, str], ...]
    meta_file: tuple[str, str]
    label_key: str
    names_key: str

    def files(self) -> tuple[tuple[str, str], ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


# URLs and MD5s as in torchvision.datasets.CIFAR10 / CIFAR100.
CIFAR10 = Archive(
    title="CIFAR-10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    size=170_498_071,
    md5="c58f30108f718f92721af3b95e74349a",
    folder="cifar-10-batches-py",
    train_files=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    test_files=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    meta_file=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    label_key="labels",
    names_key="label_names",
)
CIFAR100 = Archive(
    title="CIFAR-100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    filename="cifar-100-python.tar.gz",
    size=169_001_437,
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    folder="cifar-100-python",
    train_files=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test_files=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    meta_file=("meta", "7973b15100ade9c7d40fb424638fde48"),
    label_key="fine_labels",
    names_key="fine_label_names",
)


@DATASETS.register("cifar10", Cifar10Options)
def cifar10(o: Cifar10Options) -> DataBundle:
    return load_cifar(CIFAR10, o.root, o.download, o.cache)


@DATASETS.register("cifar100", Cifar100Options)
def cifar100(o: Cifar100Options) -> DataBundle:
    return load_cifar(CIFAR100, o.root, o.download, o.cache)


def load_cifar(archive: Archive, root: str, download: bool, cache: bool) -> DataBundle:
    """The archive's splits as uint8 tensors, fetching and extracting it into root if needed."""
    root_path = Path(root).expanduser().absolute()
    folder = root_path / archive.folder
    if not all((folder / name).is_file() for name, _ in archive.files()):
        if all((root_path / split).is_dir() for split in ("train", "test")):
            raise UserError(
                f"{root_path} is an image folder (train/ and test/), not {archive.title}'s "
                "archive: add dataset=imagefolder to read it (it takes dataset.root and "
                "$CIFAR_EXP_DATA alike)"
            )
        fetch(archive, root_path, download)
    files = [(name, (folder / name).stat()) for name, _ in archive.files()]
    key = fingerprint(files, {"source": archive.title})
    cache_path = folder / CACHE_NAME
    if cache and (bundle := load_cache(cache_path, key)) is not None:
        return bundle
    for name, md5 in archive.files():
        digest = file_md5(folder / name)
        if digest != md5:
            raise UserError(
                f"{folder / name} failed its checksum (MD5 {digest}, expected {md5}): it is "
                f"corrupted or not from the official archive. Delete {folder} and run again "
                f"to extract (or download) {archive.filename} afresh."
            )
    train, test = (
        read_batches(folder, files, archive) for files in (archive.train_files, archive.test_files)
    )
    with (folder / archive.meta_file[0]).open("rb") as f:
        classes = list(pickle.load(f, encoding="latin1")[archive.names_key])
    bundle = DataBundle(train=train, test=test, classes=classes)
    if cache:
        save_cache(cache_path, key, bundle)
    return bundle


def read_batches(folder: Path, files: tuple[tuple[str, str], ...], archive: Archive) -> Split:
    images, labels = [], []
    for name, _ in files:
        with (folder / name).open("rb") as f:
            # The official format is pickle; the file's MD5 was checked just before.
            entry = pickle.load(f, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[archive.label_key])
    return Split(torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64))


def fetch(archive: Archive, root: Path, download: bool) -> None:
    """Make root/<archive.folder> complete: from a local archive, else by downloading one."""
    archive_path = root / archive.filename
    if archive_path.exists():
        problem = archive_problem(archive_path, archive)
        if problem:
            raise UserError(
                f"{archive_path} {problem}. Delete it and run again to download it afresh "
                "(or copy a good copy there)."
            )
    elif not download:
        raise UserError(missing_message(archive, root, "dataset.download is false"))
    else:
        download_archive(archive, root)
    extract(archive_path, root, archive)


def missing_message(archive: Archive, root: Path, why: str) -> str:
    return (
        f"{archive.title} is not in {root} (looked for {archive.folder}/ and "
        f"{archive.filename}) and {why}. Fix: run once with a network (dataset.download=true), "
        f"copy {archive.folder}/ or {archive.filename} into {root}, point dataset.root=... "
        "(or $CIFAR_EXP_DATA) at a folder that has it, or use your own images with "
        "dataset=imagefolder dataset.root=<folder>, or try dataset=synthetic."
    )


def file_md5(path: Path) -> str:
    """The MD5 of a file's bytes, read in chunks (the archives are 160 MB)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def archive_problem(path: Path, archive: Archive) -> str | None:
    """What is wrong with a local archive file, or None when its size and MD5 match."""
    size = path.stat().st_size
    if size < archive.size:
        return f"is truncated ({size:,} of {archive.size:,} bytes; an interrupted download?)"
    digest = file_md5(path)
    if size != archive.size or digest != archive.md5:
        return (
            f"failed its checksum (MD5 {digest}, {size:,} bytes; expected {archive.md5}, "
            f"{archive.size:,} bytes): it is corrupted or not the official archive"
        )
    return None


def download_archive(archive: Archive, root: Path) -> None:
    """Download to <name>.part, verify, then rename: only a verified archive gets its name.

    Not torchvision's download_url: it writes under the final name, has no timeout (an
    offline machine can hang) and retries an https URL over plain http."""
    part = root / f"{archive.filename}.part"
    log.info("downloading %s to %s", archive.url, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        terminal = sys.stdout.isatty()  # a bar there; elsewhere a log line every 30 s
        bar = tqdm(
            total=archive.size,
            unit="B",
            unit_scale=True,
            desc=archive.filename,
            disable=not terminal,
            file=sys.stdout,
        )
        line = ProgressLine(f"downloading {archive.filename}: MiB", archive.size >> 20)
        with (
            urllib.request.urlopen(archive.url, timeout=60) as response,
            part.open("wb") as out,
            bar,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
                if not terminal:
                    line.advance(len(chunk) >> 20)
    except OSError as err:  # urllib's URLError and socket timeouts are OSErrors too
        part.unlink(missing_ok=True)
        raise UserError(
            missing_message(archive, root, f"could not be downloaded from {archive.url} ({err})")
        ) from err
    problem = archive_problem(part, archive)
    if problem:
        part.unlink()
        raise UserError(
            f"the download of {archive.url} {problem}; nothing was kept. Run again to retry."
        )
    os.replace(part, root / archive.filename)


def extract(archive_path: Path, root: Path, archive: Archive) -> None:
    """Extract into a temporary folder and rename it into place once everything is out."""
    staging = root / f".{archive.folder}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    # Python's "data" filter refuses members that would land outside the folder (torchvision's
    # extract_archive sets no filter, so it is not used here).
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    log.info("extracting %s", archive_path)
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            tar.extractall(staging, **safe)
        extracted = staging / archive.folder
        missing = [n for n, _ in archive.files() if not (extracted / n).is_file()]
        if missing:
            raise tarfile.TarError(f"it lacks {', '.join(missing)}")
        target = root / archive.folder
        shutil.rmtree(target, ignore_errors=True)
        os.replace(extracted, target)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise UserError(
            f"{archive_path} is truncated or corrupt and cannot be extracted ({err}). "
            "Delete it and run again to download it afresh."
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
