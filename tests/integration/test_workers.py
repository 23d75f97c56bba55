"""augment.workers: training batches prepared ahead in worker processes are the batches the
training loop would make itself, a run with them stops cleanly on a Ctrl-C sent to its
whole process group, and resumes to the run without them, bitwise."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cifar_exp.records.commands import override
from helpers.cli import output_in_process, printed_command, run_in_process, run_printed
from helpers.compare import assert_same_run

RUN = [
    "dataset=synthetic",
    "dataset.train_size=384",
    "dataset.test_size=64",
    "device=cpu",
    "model=resnet20",
    "model.width=4",
    "augment=standard",
    "augment.policy=trivialaugment",
    "trainer.batch_size=32",
    "trainer.epochs=3",
    "trainer.num_threads=1",
    "trainer.log_interval_s=0",
]


def test_a_ctrl_c_to_the_process_group_stops_and_resumes_to_the_run_without_workers(tmp_path):
    assert run_in_process(*RUN, "augment.workers=0", "hydra.run.dir=ref", cwd=tmp_path) == 0
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *RUN, "augment.workers=1"]
        + [override("hydra.run.dir", run_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    lines: list[str] = []
    first_epoch = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "epoch 1/3" in line:
                first_epoch.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first_epoch.wait(240), "".join(lines)[-3000:]
    time.sleep(0.2)  # into epoch 2
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group
    proc.wait(timeout=120)
    reader.join()
    out = "".join(lines)
    assert proc.returncode == 128 + signal.SIGINT, out[-3000:]
    assert "Traceback" not in out and "exited unexpectedly" not in out, out[-3000:]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
    (stop,) = [line for line in out.splitlines() if "stopped by SIGINT" in line]
    resumed = run_printed(printed_command(stop, "Continue with: "), cwd=tmp_path)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert_same_run(tmp_path / "ref", run_dir)


def test_a_killed_run_takes_its_workers_with_it_and_resumes_at_once(tmp_path):
    run_dir = tmp_path / "run"
    args = [*RUN, "trainer.epochs=1000", "augment.workers=1", override("hydra.run.dir", run_dir)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.pt").exists():  # epoch 1 saved: epoch 2 runs
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    workers = [
        int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    ]
    assert workers, "no batch worker started"
    proc.kill()  # SIGKILL: no handler runs in the run's process
    proc.wait(timeout=60)
    # At once: without a parent-death signal a worker notices its parent gone within 5 s.
    deadline = time.monotonic() + 1
    while any(Path(f"/proc/{w}").exists() and "zombie" not in state(w) for w in workers):
        assert time.monotonic() < deadline, "a batch worker outlived its run"
        time.sleep(0.05)
    code, printed = output_in_process(f"resume={run_dir}", "trainer.epochs=2", cwd=tmp_path)
    assert code == 0, printed[-3000:]  # not refused: nothing holds the folder


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
