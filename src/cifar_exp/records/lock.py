"""One writer per run folder: an exclusive lock on `<folder>/.lock`, taken before anything is
written there and held by an open file until the process ends (a sweep job's folder: until
the job ends).

The lock is `fcntl.flock` on that open file, so the kernel drops it when the process ends,
however it ends (an exception, SIGKILL, the machine going down): a lock left behind never
blocks a resume, and there is nothing to clean up. The file itself stays in the folder; once
locked, the holder writes its process id, host, start time and command into it, so that a
process refused the lock can say who holds it.

File systems without working locks: on NFS (v4, or v3 with lockd) Linux maps flock onto the
server's byte-range locks, so processes on other machines are excluded too. Mounted with
`nolock` or `local_lock=flock` (or Lustre with `localflock`), flock only excludes processes
on the same machine; where flock fails outright (Lustre without `-o flock`: "Function not
implemented"), a warning says the folder is not protected and the run goes on unlocked. In
both cases, start each run folder's runs (and continue each sweep) from one machine only.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_exp.errors import UserError

log = logging.getLogger("cifar_exp")

LOCK_FILE = ".lock"
# A refused process retries this long: another one may only be looking (holder_of), or its
# holder may not have written its name yet.
PATIENCE_S = 0.5

_held: dict[Path, int] = {}  # folder -> the open file that holds its lock


def _forget_in_child() -> None:
    """A forked process (a batch worker) must not share the locks: an flock belongs to the
    open file, so a copy of the descriptor in a child that outlives its parent would hold
    the folder after the run itself ended."""
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock, as it wrote in the lock file (None: not written yet)."""

    pid: int | None = None
    host: str | None = None
    since: str | None = None
    command: str | None = None
    left_by: int | None = None  # the recorded holder, ended; `pid` is a process it left

    def describe(self) -> str:
        if self.pid is None:
            return "another process (it has not written its name into the lock file yet)"
        if self.left_by is not None:
            return (
                f"process {self.pid} on host {self.host}, left running by process "
                f"{self.left_by} ({self.command}), which has ended"
            )
        text = f"process {self.pid} on host {self.host}, since {self.since}"
        return f"{text} ({self.command})" if self.command else text


class FolderInUse(UserError):
    """Another process writes to the folder."""

    def __init__(self, folder: Path, holder: Holder, then: str) -> None:
        stop = "Ctrl-C there" if holder.pid is None else f"kill -INT {holder.pid}"
        super().__init__(
            f"{folder} is in use by {holder.describe()}; two processes must not write to "
            f"one run folder. Wait for it to end or stop it ({stop}: it saves a checkpoint), "
            f"then {then}"
        )
        self.holder = holder


def hold(folder: Path, then: str) -> None:
    """Lock `folder` for this process (until it ends, or release); FolderInUse, naming the
    holder and ending with `then` (what to do once it is free), when another process has it."""
    folder = folder.absolute()
    if folder in _held:
        return
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise UserError(
            f"cannot write to the output directory {folder} ({err.strerror or err}); fix its "
            "permissions or choose another folder"
        ) from err
    if not _lock(fd, path):
        os.close(fd)
        raise FolderInUse(folder, read_holder(path), then)
    _held[folder] = fd
    _write_holder(fd)


def _lock(fd: int, path: Path) -> bool:
    """Take the exclusive lock, waiting up to PATIENCE_S; True also where the file system
    cannot lock (after a warning: the run goes on unprotected)."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        except OSError as err:
            log.warning(
                "cannot lock %s (%s): this file system does not support locks, so nothing "
                "stops a second process from writing to this folder; make sure only one runs",
                path,
                err.strerror or err,
            )
            return True


def _write_holder(fd: int) -> None:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": now,
        "command": shlex.join(sys.orig_argv),
    }
    # The name is a courtesy to whoever is refused: the lock holds without it (a full disk).
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def read_holder(path: Path) -> Holder:
    """The holder named in a lock file; a holder that has only just taken the lock gets a
    moment to write its name. When the named process has ended on this host, the process
    that still has the file open (one it started) is named instead."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            data = json.loads(path.read_text())
            holder = Holder(data["pid"], data["host"], data["since"], data.get("command"))
            break
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return Holder()
            time.sleep(0.02)
    if holder.host != socket.gethostname() or _running(holder.pid):
        return holder
    others = _processes_with_open(path)
    if not others:
        return holder
    return Holder(others[0], holder.host, holder.since, holder.command, left_by=holder.pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _processes_with_open(path: Path) -> list[int]:
    """The processes of this machine that have `path` open, this one left out (Linux's
    /proc; elsewhere none are found)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    for fds in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fds.parent.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in fds.iterdir():
                with contextlib.suppress(OSError):
                    opened = os.stat(fd)
                    if (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino):
                        found.append(pid)
                        break
    return sorted(found)


def holder_of(folder: Path) -> Holder | None:
    """Who holds `folder`'s lock now (None: nobody, or this process), without changing a byte
    of the folder: a shared lock taken and dropped at once."""
    folder = folder.absolute()
    if folder in _held:
        return None
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no process ever held it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path)
    except OSError:  # a file system without locks: nobody can be seen holding it
        return None
    finally:
        os.close(fd)  # drops the shared lock
    return None


def release(folder: Path) -> None:
    """Let go of `folder`'s lock (a sweep job's, when the job ends)."""
    fd = _held.pop(folder.absolute(), None)
    if fd is not None:
        os.close(fd)


def release_all() -> None:
    """Let go of every lock this process holds (the end of main)."""
    for folder in list(_held):
        release(folder)
