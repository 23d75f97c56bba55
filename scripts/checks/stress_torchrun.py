"""Launch many short 2-process torchrun runs back to back and count the non-zero exits.

Each round is a first launch (2 epochs) and a resume of it (a third epoch), both under
`torchrun --standalone --nproc_per_node=2`, with `--load N` busy processes competing for the
CPU meanwhile (a finished run that exits non-zero tends to show up under load). A failed launch
prints its exit code and the last lines of its output. Example:

    python scripts/checks/stress_torchrun.py --rounds 25 --load 2

Exit status: 0 when every launch exited 0, 1 otherwise.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A tiny run on synthetic data: one launch takes a few seconds, mostly starting up.
RUN = [
    "device=cpu",
    "dataset=synthetic",
    "dataset.train_size=250",
    "dataset.test_size=125",
    "trainer.epochs=2",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=50",
    "trainer.log_every_n_steps=1",
    "trainer.num_threads=1",
]


def busy(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def torchrun(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "-m", "cifar_exp.run", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def one_round(workdir: Path) -> list[tuple[str, subprocess.CompletedProcess]]:
    """A first launch, then (if it wrote its run) a resume with one more epoch."""
    first = torchrun(*RUN, cwd=workdir)
    launches = [("first", first)]
    runs = sorted(p for p in (workdir / "outputs").glob("*/*") if p.is_dir())
    if runs:
        launches.append(("resume", torchrun(f"resume={runs[-1]}", "trainer.epochs=3", cwd=workdir)))
    return launches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="first launch + resume pairs")
    parser.add_argument("--load", type=int, default=2, help="busy processes running meanwhile")
    args = parser.parse_args()

    stop = multiprocessing.Event()
    load = [
        multiprocessing.Process(target=busy, args=(stop,), daemon=True) for _ in range(args.load)
    ]
    for process in load:
        process.start()
    failures, launches, start = 0, 0, time.perf_counter()
    try:
        for n in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="stress-torchrun-") as tmp:
                for kind, proc in one_round(Path(tmp)):
                    launches += 1
                    if proc.returncode != 0:
                        failures += 1
                        tail = (proc.stdout + proc.stderr)[-1500:]
                        print(f"round {n} {kind}: exit {proc.returncode}\n{tail}\n", flush=True)
            stamp = time.strftime("%H:%M:%S")
            done = f"{failures} failed of {launches}"
            print(f"{stamp} round {n + 1}/{args.rounds}: {done}", flush=True)
    finally:
        stop.set()
        for process in load:
            process.join()
    minutes = (time.perf_counter() - start) / 60
    print(f"{launches - failures} of {launches} launches exited 0 ({minutes:.1f} min)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
