"""GPU training throughput for lenet5, resnet and resnet18 with each speed option, and a full
resnet18 epoch with the data set on the GPU; one call, a few minutes.

    python scripts/bench/gpu.py --json bench_gpu.json
    python scripts/bench/gpu.py --dry-run          # seconds, on the CPU too: checks the script

Per model, every variant trains its own copy on one fixed batch already on the GPU; rounds
alternate the variants; the table gives median images/s, the ratio to fp32, compile time
(apart) and peak CUDA memory. Then resnet18 trains two full epochs over 50,000 CIFAR-sized
images held on the GPU (synthetic, same shapes and cost as CIFAR-10) through the project's
BatchLoader, in fp32 and in the fastest variant measured. `--budget-s` stops measuring (and
says what it skipped) so the call stays within its time slot.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import page
import torch
from benchlib import (
    TimedStep,
    Variant,
    alternate,
    build,
    page_throughput,
    provenance,
    random_batch,
    summary,
    synchronize,
    table,
    warm_up,
)

from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.batches import BatchLoader

VARIANTS = [
    Variant("fp32"),
    Variant("fp32", channels_last=True),
    Variant("bf16"),
    Variant("bf16", channels_last=True),
    Variant("fp16"),
    Variant("fp16", channels_last=True),
    Variant("bf16", channels_last=True, compile=True),
]


def build_and_warm_up(
    model_name: str, variant: Variant, batch: tuple[torch.Tensor, torch.Tensor], steps: int
) -> tuple[TimedStep, float | None]:
    """A warmed-up timed step and the CUDA memory (MiB) it took at its peak: parameters, grads,
    optimizer state, activations and workspace, over what was allocated before it."""
    device = batch[0].device
    if device.type != "cuda":
        timed = build(model_name, variant, device)
        warm_up(timed, batch, steps)
        return timed, None
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    timed = build(model_name, variant, device)
    warm_up(timed, batch, steps)
    return timed, (torch.cuda.max_memory_allocated(device) - before) / 2**20


def epochs(
    model_name: str,
    variant: Variant,
    device: torch.device,
    batch_size: int,
    train_size: int,
    count: int = 2,
) -> dict:
    """Train for `count` epochs over images held on the device; seconds per epoch."""
    data = load_dataset({"name": "synthetic", "train_size": train_size, "test_size": 10})
    data.train.images = data.train.images.to(device)
    data.train.labels = data.train.labels.to(device)
    loader = BatchLoader(data.train, batch_size, device, shuffle=True)
    timed = build(model_name, variant, device)
    seconds = []
    for epoch in range(1, count + 1):
        loader.set_epoch(epoch)
        synchronize(device)
        start = time.perf_counter()
        for images, labels in loader:
            timed.step(images, labels)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        logging.info("%s %s epoch %d: %.2fs", model_name, variant.label, epoch, seconds[-1])
    return {
        "model": model_name,
        "variant": variant.label,
        "images": train_size,
        "batch_size": batch_size,
        "epoch_s": [round(s, 2) for s in seconds],
        "images_per_s": round(train_size / seconds[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--epoch-model", default="resnet18")
    parser.add_argument("--epoch-images", type=int, default=50_000)
    parser.add_argument("--budget-s", type=float, default=420, help="stop measuring after this")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny sizes and models; without CUDA: on the CPU, no fp16 or compile variants",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants = VARIANTS
    if args.dry_run:
        args.batch_size, args.steps, args.rounds, args.warmup = 4, 1, 2, 1
        args.models, args.epoch_model, args.epoch_images = ["lenet5", "resnet20"], "lenet5", 64
    if device.type != "cuda":
        if not args.dry_run:
            parser.error("no CUDA GPU here; use --dry-run to check the script on the CPU")
        variants = [v for v in VARIANTS if v.precision != "fp16" and not v.compile]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    logging.info("%s, torch %s", name, torch.__version__)

    batch = random_batch(args.batch_size, device)
    rows, skipped = [], []
    for model_name in args.models:
        if time.perf_counter() - started > args.budget_s:
            skipped.append(model_name)
            continue
        built = [build_and_warm_up(model_name, v, batch, args.warmup) for v in variants]
        timed_steps = [t for t, _ in built]
        alternate(timed_steps, batch, args.steps, args.rounds)
        for row, (_, peak) in zip(summary(model_name, timed_steps), built, strict=True):
            rows.append(row | {"peak_mb": None if peak is None else round(peak, 1)})
        del timed_steps, built
        if device.type == "cuda":
            torch.cuda.empty_cache()

    epoch_rows = []
    measured = [r for r in rows if r["model"] == args.epoch_model]
    if not measured:
        skipped.append(f"{args.epoch_model} epochs ({args.epoch_model} was not measured)")
    else:
        fastest = max(measured, key=lambda r: r["images_per_s"])["variant"]
        for label in dict.fromkeys(["fp32", fastest]):
            if time.perf_counter() - started > args.budget_s:
                skipped.append(f"{args.epoch_model} epochs in {label}")
                continue
            variant = next(v for v in variants if v.label == label)
            epoch_rows.append(
                epochs(args.epoch_model, variant, device, args.batch_size, args.epoch_images)
            )

    print(
        f"\n{name}, torch {torch.__version__}, batch {args.batch_size}, "
        f"{args.steps} steps x {args.rounds} rounds\n"
    )
    print(table(rows))
    if device.type == "cuda":
        peaks = ", ".join(f"{r['model']} {r['variant']} {r['peak_mb']:.0f}" for r in rows)
        print(f"\npeak CUDA memory per variant (MiB): {peaks}")
    for e in epoch_rows:
        print(
            f"{e['model']} epoch of {e['images']} images on the device, {e['variant']}, batch "
            f"{e['batch_size']}: {' / '.join(f'{s:.2f}s' for s in e['epoch_s'])} "
            f"(epoch 1 / epoch 2), {e['images_per_s']:.0f} images/s in epoch 2"
        )
    if skipped:
        print(f"skipped (time budget {args.budget_s:.0f}s): {', '.join(skipped)}")
    total = time.perf_counter() - started
    print(f"total {total:.0f}s")
    if args.json:
        result = provenance(torch.get_num_threads()) | {
            "device": name,
            "args": vars(args) | {"json": str(args.json)},
            "rows": rows,
            "epochs": epoch_rows,
        }
        args.json.write_text(json.dumps(result | {"skipped": skipped, "total_s": total}, indent=2))


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_title(result: dict) -> str:
    return f"{result['device']}, batch {result['args']['batch_size']}"


SECTION = page.Section(
    heading="GPU training throughput",
    about=(
        "`scripts/bench/gpu.py` times the same training step as the CPU benchmark for "
        "`lenet5`, `resnet` and `resnet18` in fp32, bf16 and fp16, each with and without "
        "channels_last, and bf16 + channels_last + compile (batch 256), with the peak CUDA "
        "memory of each variant; then two full `resnet18` epochs over 50,000 CIFAR-sized "
        "images held on the GPU, in fp32 and in the fastest variant."
    ),
    body=page_throughput,
    title=page_title,
    missing=(
        "Not measured yet: no GPU has been at hand, so the GPU-only paths (NCCL, fp16 with its "
        "GradScaler, one GPU per local rank) have not run either. On a GPU, "
        "`python scripts/bench/gpu.py --json docs/benchmarks/gpu-<label>.json` measures it in "
        "one call of a few minutes (`--dry-run` checks the script in seconds, also on a CPU)."
    ),
)

if __name__ == "__main__":
    main()
