"""Real interruptions: a run trained in this process and stopped by a real SIGINT right after
a chosen step, and a process SIGKILLed the moment a condition holds."""

import os
import signal
import subprocess
import time
from collections.abc import Callable


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], object], timeout: float = 300) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (polled every 2 ms); fail when the process
    ends first or nothing happens within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the process ended ({proc.returncode}) before it was killed"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def interrupted_at(trainer, step):
    """Send this process a SIGINT right after optimizer step `step`."""
    original = trainer.step

    def step_then_signal(images, labels):
        out = original(images, labels)
        if trainer.progress.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    trainer.step = step_then_signal


def fit(cfg, run_dir, checkpoint=None, stop_at=None):
    """Train `cfg` into `run_dir` (from `checkpoint` when given), stopped after step `stop_at`
    when given (it then raises Interrupted)."""
    from cifar_exp.runtime.signals import gate
    from cifar_exp.training.build import ready_trainer

    trainer = ready_trainer(cfg, run_dir, checkpoint=checkpoint)
    if stop_at is not None:
        interrupted_at(trainer, stop_at)
    with gate.training() as stop:
        return trainer.fit(stop)
