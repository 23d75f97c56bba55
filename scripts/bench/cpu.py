"""CPU training throughput: fp32 against bf16 / channels_last / torch.compile, side by side.

    python scripts/bench/cpu.py            # seed ResNet and resnet20
    python scripts/bench/cpu.py --compile --json bench_cpu.json    # + compiled variants
    python scripts/bench/cpu.py --grad-norm     # fp32 with the engine's gradient-norm logging
    python scripts/bench/cpu.py --models lenet5 --start-cost      # + what a run's start costs

For each model, every variant trains its own copy on one fixed batch (the seed's batch 32 by
default); rounds alternate the variants and the table gives median images/s and the ratio to
fp32. Compile time is measured in the warm-up and reported apart. Keep threads x processes
within the machine's cores, and nothing else heavy running meanwhile.

--start-cost also times what every run does once at its start to log and record the model's
size (build.model_size: its parameters, and its FLOPs per 32x32 image counted by building it
on the meta device and running FlopCounterMode over one image), cold each round, against one
epoch of CIFAR-10's 50,000 training images at the fp32 rate measured here.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import page
import torch
from benchlib import (
    TimedStep,
    Variant,
    alternate,
    build,
    cpu_model,
    grad_norm_us,
    model_options,
    page_throughput,
    provenance,
    random_batch,
    summary,
    table,
    warm_up,
)

from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.models.stats import count_flops, meta_model, param_counts
from cifar_exp.runtime.device import read_cpu_flags

EPOCH_IMAGES = 50_000  # CIFAR-10's training split

VARIANTS = [
    Variant("fp32"),
    Variant("fp32", channels_last=True),
    Variant("bf16"),
    Variant("bf16", channels_last=True),
]
COMPILED = [
    Variant("fp32", compile=True),
    Variant("fp32", channels_last=True, compile=True),
    Variant("bf16", channels_last=True, compile=True),
]


def grad_norm_note(name: str, timed_steps: list[TimedStep], batch_size: int) -> str:
    """The gradient-norm bookkeeping's time per step, alone and against the median step."""
    plain, with_norm = timed_steps
    step_us = batch_size / statistics.median(plain.rates) * 1e6
    alone = statistics.median(grad_norm_us(with_norm) for _ in range(5))
    return (
        f"{name}: the gradient-norm bookkeeping alone takes {alone:.0f} us per step, "
        f"{100 * alone / step_us:.2f}% of the median fp32 step ({step_us / 1000:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["resnet", "resnet20"],
        help="registered names, each optionally with options: airbench:widths=[32,128,128]",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants")
    parser.add_argument(
        "--grad-norm",
        action="store_true",
        help="fp32 against fp32 with the per-step gradient norm the engine logs (alone)",
    )
    parser.add_argument(
        "--start-cost", action="store_true", help="time a run's model-size count at its start"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--dry-run", action="store_true", help="a seconds-long smoke run (tiny sizes)"
    )
    args = parser.parse_args()
    for spec in args.models:
        try:
            model_options(spec)
        except ConfigError as err:
            parser.error(f"--models {spec}: {err}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.dry_run:
        args.batch_size, args.steps, args.rounds, args.warmup = 4, 1, 2, 1
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    flags = read_cpu_flags() or set()
    bf16_flags = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
    logging.info(
        "%s, %d threads, torch %s; CPU capability %s; bf16/AMX flags: %s",
        cpu_model(),
        torch.get_num_threads(),
        torch.__version__,
        torch.backends.cpu.get_cpu_capability(),
        ", ".join(bf16_flags) or "none",
    )
    variants = VARIANTS + (COMPILED if args.compile else [])
    if args.grad_norm:
        variants = [Variant("fp32"), Variant("fp32", grad_norm=True)]
    batch = random_batch(args.batch_size, device)
    rows, notes, starts = [], [], []
    for name in args.models:
        timed_steps = [build(name, v, device) for v in variants]
        for timed in timed_steps:
            warm_up(timed, batch, args.warmup)
            logging.info("%s %s warmed up", name, timed.variant.label)
        alternate(timed_steps, batch, args.steps, args.rounds)
        rows += summary(name, timed_steps)
        if args.grad_norm:
            notes.append(grad_norm_note(name, timed_steps, len(batch[1])))
        if args.start_cost:
            starts.append(start_cost(name, timed_steps[0], args.rounds))
    print(
        f"\nbatch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, bf16/AMX flags: "
        f"{', '.join(bf16_flags) or 'none'}\n"
    )
    print(table(rows))
    print("\n".join(notes))
    if starts:
        print("\n" + start_table(starts))
    if args.json:
        result = provenance(torch.get_num_threads()) | {
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "args": vars(args) | {"json": str(args.json)},
            "rows": rows,
        }
        if notes:
            result["notes"] = notes
        if starts:
            result["start_cost"] = starts
        args.json.write_text(json.dumps(result, indent=2))


def start_cost(spec: str, fp32: TimedStep, rounds: int) -> dict:
    """The seconds of build.model_size's work at a run's start (parameters, then the FLOPs
    of one image on a meta-device copy), median of `rounds` cold counts, and their share of
    one epoch of EPOCH_IMAGES images at `fp32`'s measured training rate."""
    options = model_options(spec)
    net = MODELS.build(options)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        sum(param_counts(net))
        count_flops(meta_model(options), (3, 32, 32)).get_total_flops()
        times.append(time.perf_counter() - start)
    epoch_s = EPOCH_IMAGES / statistics.median(fp32.rates)
    count_s = statistics.median(times)
    return {
        "model": spec,
        "count_s": round(count_s, 5),
        "max_s": round(max(times), 5),
        "epoch_s": round(epoch_s, 1),
        "share_of_epoch": count_s / epoch_s,
    }


def start_table(starts: list[dict]) -> str:
    lines = [
        "| model | size count at start (median, max) | fp32 epoch of 50,000 images | share |",
        "|---|---:|---:|---:|",
    ]
    for r in starts:
        lines.append(
            f"| {r['model']} | {r['count_s'] * 1e3:.1f} ms, {r['max_s'] * 1e3:.1f} ms | "
            f"{r['epoch_s']:.1f} s | {100 * r['share_of_epoch']:.3f}% |"
        )
    return "\n".join(lines)


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_title(result: dict) -> str:
    models = ", ".join(f"`{m}`" for m in result["args"]["models"])
    return f"{result['cpu']['model']}: {models}, batch {result['args']['batch_size']}"


SECTION = page.Section(
    heading="CPU training throughput",
    about=(
        "`scripts/bench/cpu.py` trains each model in each variant (precision, memory format, "
        "compilation) on one fixed batch already in memory, so only the training step is timed "
        "(Adam 1e-3, as in the seed post). The rounds alternate the variants; the tables give "
        "median images/s and the ratio to fp32. `resnet` is the seed post's ResNet."
    ),
    body=page_throughput,
    title=page_title,
)

if __name__ == "__main__":
    main()
