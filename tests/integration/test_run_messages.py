"""What a run says about itself in its log: progress without a bar, and how much of a split
an accuracy covers when a limit or dataset.max_per_class cut it."""

import re

from helpers.cli import run_cli
from helpers.overrides import TINY

# 64 batches of 32: long enough for several progress lines at a 0.02 s interval.
LONGER = [*TINY, "dataset.train_size=2048", "trainer.log_every_n_steps=1000"]


def test_a_redirected_run_logs_progress_lines(tmp_path):
    """A real process with its output in a pipe, as with `> train.log 2>&1`."""
    interval = ["trainer.progress_bar=true", "trainer.log_interval_s=0.02"]
    proc = run_cli(*LONGER, *interval, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no progress bar (stdout is not a terminal)" in proc.stdout
    assert re.search(r"epoch 1/1  batch \d+/64  \d+ img/s", proc.stdout)
