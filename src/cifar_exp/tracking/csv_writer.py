"""tracker=[...,csv]: metrics.csv in the run folder, one row per logged point (tag, step,
epoch, value, wall_time), for `pandas.read_csv` and nothing else.

Per-epoch rows have the epoch and the optimizer step it ended at; per-step rows the step and
the epoch it belongs to. A resumed run keeps the rows up to its checkpoint (TensorBoard's
trimming rule: per-epoch tags up to its epoch, per-step tags up to its step) and appends,
so no point appears twice. Rows a killed process left torn (the last line cut short, a
field that is not a number) are dropped then, with a warning that counts them.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

from cifar_exp.records.atomic import write_bytes_atomically
from cifar_exp.runtime.signals import gate
from cifar_exp.tracking.tags import STEP_TAGS, HParamValue

log = logging.getLogger(__name__)

CSV_FILE = "metrics.csv"
FIELDS = ("tag", "step", "epoch", "value", "wall_time")


class CsvWriter:
    name = "csv"

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CSV_FILE
        self.continued = False
        self.file: io.TextIOWrapper | None = None

    def continue_from(self, epoch: int, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        ended = [line for line in lines if line.endswith("\n")]  # a cut last line has no end
        rows = list(csv.DictReader(ended))
        whole = [r for r in rows if _whole(r)]
        torn = len(lines) - len(ended) + len(rows) - len(whole)
        if torn:
            log.warning("%s: dropped %d torn row(s) a killed run left", self.path, torn)
        kept = [r for r in whole if _kept(r, epoch, step)]
        out = io.StringIO()
        table = csv.DictWriter(out, FIELDS, lineterminator="\n")
        table.writeheader()
        table.writerows(kept)
        with gate.deferred():  # whole or not at all: a signal waits
            write_bytes_atomically(self.path, out.getvalue().encode())
        self.continued = True

    def start(self, hparams: dict[str, HParamValue], texts: dict[str, str], run_id: Any) -> None:
        # A new run replaces what a failed attempt left (as TensorBoard's writer does).
        fresh = not (self.continued and self.path.is_file())
        self.file = self.path.open("w" if fresh else "a", newline="")
        self.table = csv.writer(self.file, lineterminator="\n")
        if fresh:
            self.table.writerow(FIELDS)
            self.file.flush()

    def log_step(self, step: int, epoch: int, values: dict[str, float]) -> None:
        now = time.time()
        self.table.writerows((tag, step, epoch, value, now) for tag, value in values.items())

    def log_epoch(self, epoch: int, step: int | None, values: dict[str, float]) -> None:
        now = time.time()
        step_ = "" if step is None else step
        self.table.writerows((tag, step_, epoch, value, now) for tag, value in values.items())
        self.file.flush()

    def end(self, status: str, reason: str | None, final: dict[str, Any] | None) -> None:
        if self.file is not None:
            self.file.close()


def _whole(row: dict[str, Any]) -> bool:
    """Whether a row has every field, each a number where one belongs (a step may be empty)."""
    try:
        if row["tag"] is None or None in row:
            return False
        int(row["epoch"])
        float(row["value"]), float(row["wall_time"])
        return row["step"] == "" or int(row["step"]) >= 0
    except (TypeError, ValueError, KeyError):
        return False


def _kept(row: dict[str, str], epoch: int, step: int) -> bool:
    if row["tag"] in STEP_TAGS:
        return int(row["step"]) <= step
    return int(row["epoch"]) <= epoch
