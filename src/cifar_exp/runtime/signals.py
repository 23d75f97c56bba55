"""Ctrl-C (SIGINT) and SIGTERM, from the first line of main to its last: `gate`.

What a signal does depends on what the process is doing when it arrives:

- training (`gate.training()`, around Trainer.fit): the first asks the run to stop after
  the current step; the trainer saves last.pt and raises Interrupted. A second stops at once.
- a stretch that must not be cut (`gate.deferred()`: a manifest write, the event files of a
  resumed run being trimmed; from RunDirGuard's check until the job starts, while Hydra
  writes .hydra/): the signal takes effect when the stretch ends, as it would have there.
- stopping (once a stop is under way): further signals are noted and ignored, so that how
  the run ended is always recorded (manifest, one line, exit code).
- anything else: it stops at once, raising StoppedAtOnce (a KeyboardInterrupt) where the
  program is.

Either way the process ends with one line saying where it stopped and how to continue, the
manifest `interrupted`, and exit code 128 + the signal's number (130, 143). The handler itself
only notes the signal, raises, or writes its notice straight to the file descriptor: a print
or a log line from a handler could land in the middle of another write to the same stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from enum import Enum
from types import FrameType
from typing import Any, NoReturn

log = logging.getLogger("cifar_exp")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def quiet_start(enabled: bool = True) -> Iterator[None]:
    """Around an entrypoint's imports (seconds: torch, Hydra), before anything is written: a
    Ctrl-C or SIGTERM ends the process at once with one line instead of a traceback from
    deep inside `import torch`. Disabled when the module is imported, not run."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        line = f"stopped at once by {signal_name(signum)} before the run started; "
        line += "nothing was written\n"
        os.write(2, line.encode())
        os._exit(128 + signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


PR_SET_PDEATHSIG = 1  # prctl's option number (linux/prctl.h)


def die_with_parent(parent: int) -> None:
    """In a helper process (a batch worker) that process `parent` started: be killed when
    the parent ends, however it ends, SIGKILL included (Linux; elsewhere a no-op). A worker
    that outlived a killed run would keep its files open and delay a resume."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(Exception):
    """The run stopped on a signal after saving a checkpoint it can resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StoppedAtOnce(KeyboardInterrupt):
    """A signal stopped the process where it was (a second one, or one outside training)."""

    def __init__(self, signum: int, second: bool) -> None:
        how = f"a second {signal_name(signum)}" if second else signal_name(signum)
        super().__init__(f"stopped at once by {how}")
        self.signum = signum
        self.second = second

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Mode(Enum):
    AT_ONCE = "at once"
    TRAINING = "training"
    DEFERRED = "deferred"


class SignalGate:
    """The process's SIGINT/SIGTERM handler and what it does now (see the module's text).

    Installed by main for the whole process (`handled`), or by `training` / `allowing` alone
    where they run without it (a launcher's worker, a test). Outside the main thread, where
    Python cannot install handlers, it does nothing."""

    def __init__(self) -> None:
        self._depth = 0
        self._previous: dict[int, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self.signum: int | None = None  # the first signal received
        self.received = 0
        self.stopping = False
        self.mode = Mode.AT_ONCE

    @property
    def requested(self) -> bool:
        """A signal asked the run to stop (what the training loop polls)."""
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.signum is None:
            self.signum = signum
        if self.stopping or self.mode is Mode.DEFERRED:
            return
        if self.mode is Mode.TRAINING and self.received == 1:
            # A raw write: a stream's own write may be under way, which a print would break.
            notice = f"{signal_name(signum)} received: finishing this step and saving a "
            notice += "checkpoint (send it again to stop at once)\n"
            with contextlib.suppress(OSError):
                os.write(2, notice.encode())
            return
        self.stop_at_once()

    def stop_at_once(self) -> NoReturn:
        assert self.signum is not None
        self.stopping = True
        raise StoppedAtOnce(self.signum, second=self.received > 1)

    def interrupted(self, message: str) -> Interrupted:
        """The Interrupted the trainer raises once it saved after the first signal; from now
        on signals are only noted, so that the stop is recorded whole."""
        assert self.signum is not None
        self.stopping = True
        return Interrupted(self.signum, message)

    def _act_on_pending(self) -> None:
        """A signal that came while it had to wait takes effect now, as it would have here."""
        if self.signum is None or self.stopping or self.mode is Mode.DEFERRED:
            return
        if self.mode is Mode.AT_ONCE or self.received > 1:
            self.stop_at_once()

    def _install(self) -> None:
        if self._depth == 0 and threading.current_thread() is threading.main_thread():
            self._reset()
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        self._depth += 1

    def _uninstall(self, keep_quiet: bool = False) -> None:
        self._depth -= 1
        if self._depth:
            return
        # A process ending after a stop keeps ignoring signals while the interpreter shuts
        # down: Python's own handler would print a traceback from wherever it is.
        quiet = keep_quiet and self.stopping
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if quiet else handler)
        self._previous.clear()

    @contextlib.contextmanager
    def _mode(self, mode: Mode) -> Iterator[None]:
        previous, self.mode = self.mode, mode
        try:
            yield
        finally:
            self.mode = previous
        self._act_on_pending()

    @contextlib.contextmanager
    def handled(self) -> Iterator[SignalGate]:
        """The whole of main: a signal before any run folder was claimed stops with one line
        and nothing written; one that came as the process was ending, after the run's record
        was written, ends it with that signal's exit code."""
        self._install()
        try:
            try:
                yield self
            except StoppedAtOnce as stop:
                log.error("%s before the run started; nothing was written", stop)
                raise SystemExit(stop.exit_code) from None
            if self.signum is not None and not self.stopping:
                self.stopping = True
                log.error("%s received as the run ended; nothing was lost", self._name())
                raise SystemExit(128 + self.signum)
        finally:
            self._uninstall(keep_quiet=True)

    def _name(self) -> str:
        return signal_name(self.signum) if self.signum is not None else "a signal"

    def defer(self) -> None:
        """From now until a job starts (`allowing`): a signal waits (Hydra writes the run
        folder's .hydra/ and opens its run.log in between)."""
        self.mode = Mode.DEFERRED

    @contextlib.contextmanager
    def allowing(self) -> Iterator[SignalGate]:
        """A job, from its first line: a signal that waited takes effect here, and one that
        comes stops at once (outside `training` and `deferred`)."""
        self._install()
        try:
            with self._mode(Mode.AT_ONCE):
                self._act_on_pending()
                yield self
        finally:
            self._uninstall()

    @contextlib.contextmanager
    def training(self) -> Iterator[SignalGate]:
        """Trainer.fit: the first signal asks it to stop after the current step."""
        self._install()
        try:
            with self._mode(Mode.TRAINING):
                yield self
        finally:
            self._uninstall()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A stretch no signal may cut; one that comes meanwhile takes effect at its end."""
        with self._mode(Mode.DEFERRED):
            yield


gate = SignalGate()
