"""Inputs that used to end in a traceback, silence or advice that could not be followed: each is
one line naming the key and what to do, a non-zero exit, and nothing written where the config
alone can tell (RunDirGuard's checks)."""

import json
import os

from cifar_exp.records import atomic
from helpers.cli import error_lines, printed_command, run_in_process, run_printed
from helpers.overrides import TINY


def test_a_full_disk_at_metrics_json_says_how_to_resume_and_that_works(
    tmp_path, monkeypatch, capfd
):
    """The second epoch's metrics.json cannot be written; the printed command, run from a
    folder with a space and a non-ASCII letter, continues from the first epoch's last.pt."""
    where = tmp_path / "dír sp ace"
    where.mkdir()
    replace, writes = os.replace, []

    def full_at_the_second_metrics(src, dst):
        if str(dst).endswith("metrics.json"):
            writes.append(dst)
            if len(writes) == 2:
                raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", full_at_the_second_metrics)
    assert run_in_process(*TINY, "trainer.epochs=2", "hydra.run.dir=run", cwd=where) == 1
    monkeypatch.undo()
    (line,) = error_lines(capfd)
    run_dir = where / "run"
    assert f"could not write {run_dir / 'metrics.json'} (the previous one is intact)" in line
    assert not list(run_dir.glob(".tmp-*"))
    command = printed_command(line, "then continue with: ")
    resumed = run_printed(command, cwd=where)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["final"]
