"""airbench94's own training code (PyPI `airbench` 0.1.8, Keller Jordan) as a contender of
the benchmarks, on the very tensors cifar-exp trains on.

On a GPU it is the package's `train94` as it is, given a `CifarLoader` over our tensors and a
`make_net94` of the widths asked. On a CPU the package cannot run (it puts everything on
`cuda` and times with CUDA events), so its two source files are loaded with the few textual
edits in CPU_EDITS, which change the device and the precision only: fp32 weights and bf16
autocast over the forward pass and the loss where the CPU has native bf16, fp32 elsewhere
(cifar-exp's CPU path, precision=auto), in place of fp16 weights on the GPU. Every edit
must match as often as it does in 0.1.8, so another version fails loudly.

Its clock, as its own log prints it: the whitening init plus the training loop (its per-epoch
evaluation left out); the final TTA evaluation is left out here too, as cifar-exp's clock
(train_s + init_s) leaves out its evaluation.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cifar_exp.runtime.device import auto_precision

log = logging.getLogger("bench")
VERSION = "0.1.8"
EPOCHS = 9.9  # airbench94's train_epochs
BATCH_SIZE = 1024


class CpuTimer:
    """Stands in for torch.cuda.Event(enable_timing=True) on a CPU: record(), elapsed_time()
    in milliseconds."""

    def __init__(self, enable_timing: bool = True) -> None:
        self.at = 0.0

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: CpuTimer) -> float:
        return 1e3 * (end.at - self.at)


# bf16 autocast where cifar-exp's precision=auto picks it (a CPU with native bf16); elsewhere
# fp32: emulated bf16 trained 9-17x slower than fp32 on an AMD EPYC (scripts/bench/cpu.py,
# docs/benchmarks.md).
NATIVE_BF16 = auto_precision(torch.device("cpu"))[0] == "bf16"
AUTOCAST = f"torch.autocast('cpu', torch.bfloat16, enabled={NATIVE_BF16})"
# (file, original text, its CPU replacement[, times it occurs]): device and precision only.
CPU_EDITS = [
    ("utils.py", "map_location=torch.device(gpu)", "map_location=torch.device('cpu')"),
    ("utils.py", "(self.images.half() / 255)", "(self.images.float() / 255)"),
    ("utils.py", "    with torch.no_grad():\n", f"    with torch.no_grad(), {AUTOCAST}:\n"),
    (
        "utils.py",
        "            outputs = model(inputs)\n            loss = loss_fn(outputs, labels).sum()\n",
        f"            with {AUTOCAST}:\n"
        "                outputs = model(inputs)\n"
        "                loss = loss_fn(outputs, labels).sum()\n",
    ),
    ("utils.py", "torch.cuda.Event(enable_timing=True)", "CpuTimer(enable_timing=True)", 2),
    ("utils.py", "torch.cuda.synchronize()", "pass", 3),
    ("lib_airbench94.py", "net = net.half().cuda()", "net = net.float()"),
]
CPU_NOTE = (
    "airbench94 on a CPU: its code with device and precision changed only ("
    f"{'fp32 weights and bf16 autocast' if NATIVE_BF16 else 'fp32 throughout, no native bf16,'}"
    " on the CPU in place of fp16 weights on cuda; CPU timers for CUDA events)"
)


def available() -> bool:
    return importlib.util.find_spec("airbench") is not None


def _edited(module_file: str, edits: list[tuple]) -> str:
    source = (Path(importlib.util.find_spec("airbench").origin).parent / module_file).read_text()
    for name, old, new, *times in edits:
        if name != module_file:
            continue
        count, expected = source.count(old), times[0] if times else 1
        if count != expected:
            raise RuntimeError(f"airbench/{module_file}: {old!r} found {count}x, not {expected}x")
        source = source.replace(old, new)
    return source


@functools.cache
def cpu_package() -> types.ModuleType:
    """airbench's utils and lib_airbench94, edited for a CPU, as the package `airbench_cpu`."""
    package = types.ModuleType("airbench_cpu")
    package.__path__ = []
    sys.modules["airbench_cpu"] = package
    for name in ("utils", "lib_airbench94"):
        module = types.ModuleType(f"airbench_cpu.{name}")
        module.__package__ = "airbench_cpu"
        module.CpuTimer = CpuTimer
        sys.modules[module.__name__] = module
        code = compile(_edited(f"{name}.py", CPU_EDITS), f"airbench_cpu/{name}.py", "exec")
        exec(code, module.__dict__)  # noqa: S102  (the package's own source, edited above)
        setattr(package, name, module)
    return package


def package_for(device: torch.device) -> tuple[types.ModuleType, types.ModuleType, str]:
    """(utils, lib_airbench94, how it runs) for `device`."""
    if device.type == "cuda":
        import airbench.lib_airbench94 as lib
        import airbench.utils as utils

        return utils, lib, f"airbench {VERSION} as it is (fp16 weights, cuda)"
    pkg = cpu_package()
    return pkg.utils, pkg.lib_airbench94, CPU_NOTE


def write_tensors(folder: Path, train: tuple, test: tuple, classes: list[str]) -> Path:
    """Our uint8 [N, 3, H, W] splits as airbench's cifar10/{train,test}.pt ([N, H, W, 3])."""
    data = folder / "cifar10"
    data.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in (("train", train), ("test", test)):
        blob = {"images": images.permute(0, 2, 3, 1).contiguous(), "labels": labels}
        torch.save({**blob, "classes": list(classes)}, data / f"{name}.pt")
    return folder


@dataclass
class AirbenchRun:
    seed: int
    epoch_s: list[float] = field(default_factory=list)  # whitening in the first
    test_acc: list[float] = field(default_factory=list)  # per epoch without TTA, then TTA
    tta_acc: float = 0.0
    train_s: float = 0.0  # whitening + training
    tta_s: float = 0.0  # the final TTA evaluation


def parse_log(text: str, seed: int) -> AirbenchRun:
    """airbench's printed table: per epoch its cumulative seconds and val_acc; the `eval`
    row its TTA accuracy and the seconds with the TTA evaluation added."""
    run = AirbenchRun(seed)
    clock = 0.0
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[1] in ("epoch", ""):
            continue
        seconds = float(cells[6])
        if cells[1] == "eval":
            run.tta_acc, run.tta_s = float(cells[5]), seconds - clock
        else:
            run.epoch_s.append(seconds - clock)
            run.test_acc.append(float(cells[4]))
            clock = seconds
    run.train_s = clock
    if not run.epoch_s:
        raise RuntimeError(f"no epoch rows in airbench's output:\n{text}")
    run.test_acc[-1] = run.tta_acc
    return run


def train(
    data_dir: Path,
    device: torch.device,
    seed: int,
    widths: tuple[int, int, int] = (64, 256, 256),
    epochs: float = EPOCHS,
    batch_size: int = BATCH_SIZE,
    warmup: bool = False,
) -> AirbenchRun | None:
    """One train94 run on the tensors in `data_dir` (write_tensors); `warmup`: airbench's
    own warm-up run (a few steps, nothing returned), as its main() does before timing."""
    utils, lib, _ = package_for(device)
    torch.manual_seed(seed)
    names = ("block1", "block2", "block3")
    make_net = functools.partial(lib.make_net94, widths=dict(zip(names, widths, strict=True)))
    out = io.StringIO()
    here = os.getcwd()
    os.chdir(data_dir)  # train() opens its test split at the relative path cifar10/
    try:
        loader = utils.CifarLoader(
            "cifar10", train=True, batch_size=batch_size, aug=lib.hyp["aug"], altflip=True
        )
        with contextlib.redirect_stdout(out):
            lib.train94(loader, epochs=epochs, make_net=make_net, run=-1 if warmup else seed)
    finally:
        os.chdir(here)
    sys.stderr.write(out.getvalue())
    return None if warmup else parse_log(out.getvalue(), seed)


def train_in_process(
    data_dir: Path,
    device: torch.device,
    seed: int,
    widths: tuple[int, int, int],
    epochs: float,
    threads: int,
) -> AirbenchRun:
    """train() in a fresh Python process, as every cifar-exp run of the benchmarks starts in
    one: no kernel it picks or memory it allocates is left over from an earlier run. On a
    GPU it first makes airbench's own warm-up run, as its main() does. RuntimeError with the
    process's last lines when it fails."""
    command = [
        sys.executable,
        __file__,
        str(data_dir),
        *("--device", device.type, "--seed", str(seed), "--epochs", f"{epochs:g}"),
        *("--threads", str(threads), "--widths", *map(str, widths)),
    ]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"airbench94, seed {seed} failed (exit {proc.returncode}): see above")
    return AirbenchRun(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    """One run in this process (train_in_process's child): its AirbenchRun as a JSON line."""
    parser = argparse.ArgumentParser(description="one airbench94 run on written tensors")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs=3, default=[64, 256, 256])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        train(args.data_dir, device, args.seed, warmup=True)
    run = train(args.data_dir, device, args.seed, tuple(args.widths), args.epochs)
    print(json.dumps(asdict(run)))


if __name__ == "__main__":
    main()
