"""Tensor cache files: a decoded data set saved with a fingerprint of the files it came from.

A cache is only trusted when its fingerprint matches the files on disk now; a stale,
unreadable or malformed cache is reported and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from cifar_exp.datasets.base import DataBundle, Split
from cifar_exp.errors import UserError
from cifar_exp.records.atomic import write_bytes_atomically

log = logging.getLogger(__name__)

# Bump when the layout of the saved dictionary changes: older caches then count as stale.
CACHE_VERSION = 1


def fingerprint(files: Iterable[tuple[str, os.stat_result]], settings: dict[str, Any]) -> str:
    """Hash of the (name, stat) list (sizes and mtimes) and of the settings it was read with."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, stat in files:
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_cache(path: Path, key: str) -> DataBundle | None:
    """The cached bundle if `path` holds one with fingerprint `key`, else None."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("version") != CACHE_VERSION:
            raise ValueError("not a cifar-exp cache of this version")
        if blob["fingerprint"] != key:
            log.info("cache %s is stale (the files changed since it was written); rebuilding", path)
            return None
        return _unpack(blob)
    # Whatever is wrong with the file (truncated, not a torch file, wrong contents), the
    # remedy is the same: decode the source again and overwrite the cache.
    except Exception as err:
        log.warning("cache %s is unreadable (%s); rebuilding it", path, err)
        return None


def save_cache(path: Path, key: str, bundle: DataBundle) -> None:
    """Write atomically; a cache that cannot be written costs only the next start's time."""
    splits = {"train": bundle.train, "test": bundle.test}
    if bundle.val is not None:
        splits["val"] = bundle.val
    blob = {
        "version": CACHE_VERSION,
        "fingerprint": key,
        "classes": bundle.classes,
        "skipped": bundle.skipped,
        "splits": {name: [s.images, s.labels] for name, s in splits.items()},
    }
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, buffer.getbuffer())
    except (OSError, UserError) as err:  # mkdir raises OSError, the write UserError
        log.warning("could not write the cache %s (%s); the next start decodes again", path, err)
        return
    log.info("cached the decoded tensors in %s", path)


def _unpack(blob: dict[str, Any]) -> DataBundle:
    classes = blob["classes"]
    splits = {}
    for name, (images, labels) in blob["splits"].items():
        ok = (
            images.dtype == torch.uint8
            and images.dim() == 4
            and images.shape[1] == 3
            and labels.dtype == torch.int64
            and labels.shape == (len(images),)
            and (len(labels) == 0 or 0 <= int(labels.min()) <= int(labels.max()) < len(classes))
        )
        if not ok:
            raise ValueError(f"malformed {name} split")
        splits[name] = Split(images, labels)
    return DataBundle(
        train=splits["train"],
        test=splits["test"],
        classes=list(classes),
        val=splits.get("val"),
        skipped=list(blob["skipped"]),
    )
