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

import pytest
import torch

from cifar_exp.augment import build_mix, build_transforms
from cifar_exp.batches import BatchLoader
from cifar_exp.commands import override
from cifar_exp.datasets import Split
from helpers.cli import printed_command, run_in_process, run_printed
from helpers.compare import assert_same_run

AUGMENT = {
    "crop_padding": 4,
    "flip": True,
    "normalize": True,
    "mean": None,
    "std": None,
    "policy": "randaugment",
    "num_ops": 2,
    "magnitude": 9,
    "cutout": 8,
    "mixup_alpha": 0.2,
}


def loader(split: Split, workers: int) -> BatchLoader:
    train, _ = build_transforms(AUGMENT, split, seed=3)
    mix = build_mix(AUGMENT, 10)
    return BatchLoader(
        split, 32, torch.device("cpu"), True, 3, transform=train, mix=mix, workers=workers
    )


def test_batches_made_by_workers_are_the_loops_own():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (160, 3, 32, 32), generator=gen, dtype=torch.uint8)
    split = Split(images, torch.randint(0, 10, (160,), generator=gen))
    here, ahead = loader(split, 0), loader(split, 2)
    for epoch, start in [(1, 0), (2, 2), (1, 0), (7, 4)]:  # epochs revisited, resumed mid-way
        here.set_epoch(epoch, start)
        ahead.set_epoch(epoch, start)
        mine, theirs = list(here), list(ahead)
        assert len(mine) == len(theirs) == 5 - start
        for (x, y), (x2, y2) in zip(mine, theirs, strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    ahead.set_epoch(3)
    next(iter(ahead))  # an epoch left half-way (a stop) leaves the workers usable
    ahead.set_epoch(3)
    here.set_epoch(3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(here, ahead, strict=True))


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


def test_workers_must_not_be_negative(compose):
    from cifar_exp.config import validate
    from cifar_exp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^augment.workers must be >= 0 \(0 = none\), got -1$"):
        validate(compose(["augment.workers=-1"]))
