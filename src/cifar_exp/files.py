"""Replacing a file so that no reader, crash or kill ever sees it half written."""

from __future__ import annotations

import os
from pathlib import Path

TMP_PREFIX = ".tmp-"  # a file starting so in an output folder is a write that never finished


def replace_atomically(path: Path, payload: bytes) -> None:
    """Write `payload` to a temporary file beside `path`, flush it to the disk, then rename it
    over `path`: a crash at any moment leaves either the old file or the new one, whole.
    Raises OSError (the temporary file removed) when it cannot."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename itself must reach the disk too, or a power loss could undo it.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
