"""Writing a file so that no reader, crash or kill ever sees it half written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cifar_exp.errors import UserError

TMP_PREFIX = ".tmp-"  # a file starting so in an output folder is a write that never finished


def write_bytes_atomically(path: Path, payload: bytes, then: str = "") -> None:
    """Write `payload` to a temporary file beside `path`, flush it to the disk, then rename it
    over `path`: a crash at any moment leaves either the old file or the new one, whole.
    When that fails, the temporary file is removed and one UserError says what to do;
    `then` adds how to go on once the disk is fixed (", then ...", ending the message)."""
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
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = " (the previous one is intact)" if path.exists() else ""
        raise UserError(
            f"could not write {path}{kept}: {err.strerror or err}. Free some disk space or "
            f"fix the folder's permissions{then or '.'}"  # a command last: no period after it
        ) from err
    except BaseException:  # a signal that stops at once: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any, then: str = "") -> None:
    """`data` as indented JSON, written atomically (`then`: as for write_bytes_atomically)."""
    write_bytes_atomically(path, (json.dumps(data, indent=2) + "\n").encode(), then)


class DamagedFile(UserError):
    """A file the tool wrote that cannot be read back (cut short, edited, other bytes)."""


def read_json(path: Path) -> Any:
    """A JSON file the tool wrote. One that cannot be parsed raises DamagedFile naming it;
    one that cannot be opened, UserError; a missing one, FileNotFoundError as open() does."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise DamagedFile(f"{path} is damaged (not text: {err.reason})") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise DamagedFile(f"{path} is damaged ({err})") from err
