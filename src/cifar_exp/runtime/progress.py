"""A progress line every so often in the log, for the long phases where no progress bar shows
(stdout is not a terminal: a log file, a batch job, a sweep's worker): decoding an image
folder, downloading CIFAR-10, an evaluation, the lr range test. Training has its own, with its
images per second (training/engine.Heartbeat)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("cifar_exp")

INTERVAL_S = 30.0  # seconds between two lines of one phase


class ProgressLine:
    """'<what> k/n (p%), elapsed .., ETA ..' at most once every `interval` seconds (none when
    `interval` is 0), e.g. "decoding images 5,120/60,000 (9%)". Reads the clock once per
    advance()."""

    def __init__(self, what: str, total: int, interval: float = INTERVAL_S) -> None:
        self.what, self.total, self.interval = what, total, interval
        self.done = 0
        self.start = time.monotonic()
        self.next = self.start + interval

    def advance(self, n: int = 1, detail: str = "") -> None:
        """Count `n` more done; `detail` (e.g. "lr 0.01, smoothed loss 2.3") ends the line."""
        self.done += n
        if not self.interval:
            return
        now = time.monotonic()
        if now < self.next or not self.total:
            return
        self.next = now + self.interval
        elapsed = now - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        log.info(
            "%s %s/%s (%.0f%%), elapsed %s, ETA %s%s",
            self.what,
            f"{self.done:,}",
            f"{self.total:,}",
            100 * self.done / self.total,
            duration(elapsed),
            duration(eta),
            f", {detail}" if detail else "",
        )


def duration(seconds: float) -> str:
    """'1h02m03s' or '2m03s'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
