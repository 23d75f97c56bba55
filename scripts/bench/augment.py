"""What each augmentation costs on the CPU beside a resnet20 training step, side by side.

    python scripts/bench/augment.py --threads 2 --json docs/benchmarks/augment-<label>.json

Every round times the resnet20 step (fp32, Adam 1e-3, one fixed batch in memory) and each
augmentation's train transform on a batch of the same size (crop + flip, then a policy,
cutout, MixUp or CutMix as `augment.*` sets them, on random 8-bit 32x32 images), alternating
them and reversing the order every other round. It prints median images/s and each one's
share of a training epoch that runs the augmentation and the step one after the other on the
same cores: augmentation time / (augmentation time + step time).

Then it trains resnet20 on each per-image policy's batches as a run does, with the batches
made in the training loop (`augment.workers=0`) and prepared ahead by one worker process
(`augment.workers=1`), alternating them, and prints images/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import page
import torch
from benchlib import TimedStep, Variant, build, provenance, random_batch, time_rate

from cifar_exp.datasets import Split
from cifar_exp.datasets.augment import build_mix, build_transforms
from cifar_exp.datasets.batches import BatchLoader

STANDARD = {"crop_padding": 4, "flip": True, "normalize": False}
# (label, the augment options beside crop + flip): what `augment=standard augment.<key>=...`
# trains with.
AUGMENTATIONS = [
    ("crop+flip", {}),
    ("autoaugment", {"policy": "autoaugment"}),
    ("randaugment", {"policy": "randaugment", "num_ops": 2, "magnitude": 9}),
    ("trivialaugment", {"policy": "trivialaugment"}),
    ("cutout=16", {"cutout": 16}),
    ("mixup_alpha=0.2", {"mixup_alpha": 0.2}),
    ("cutmix_alpha=1.0", {"cutmix_alpha": 1.0}),
]


def augmentation_loader(
    options: dict, batch_size: int, batches: int, workers: int = 0
) -> BatchLoader:
    """A training loader over `batches` batches of random images with this augmentation."""
    gen = torch.Generator().manual_seed(0)
    n = batch_size * batches
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    split = Split(images, torch.randint(0, 10, (n,), generator=gen))
    config = {**STANDARD, "policy": "none", **options}
    transform, _ = build_transforms(config, split)
    mix = build_mix(config, 10)
    return BatchLoader(
        split,
        batch_size,
        torch.device("cpu"),
        shuffle=True,
        transform=transform,
        mix=mix,
        workers=workers,
    )


def loader_rate(loader: BatchLoader, epoch: int) -> float:
    """Images/s of one pass over the loader (cutting the batches, augmenting them)."""
    loader.set_epoch(epoch)
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    return seen / (time.perf_counter() - start)


def train_rate(timed: TimedStep, loader: BatchLoader, epoch: int) -> float:
    """Images/s of training on one pass over the loader, as a run's epoch does."""
    loader.set_epoch(epoch)
    start = time.perf_counter()
    seen = 0
    for images, labels in loader:
        timed.step(images, labels)
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def compare_workers(timed: TimedStep, args: argparse.Namespace) -> list[dict]:
    """Training images/s on each per-image policy's batches with 0 and 1 workers."""
    rows = []
    for label, options in AUGMENTATIONS:
        if "policy" not in options:
            continue
        loaders = {
            workers: augmentation_loader(options, args.batch_size, args.train_batches, workers)
            for workers in (0, 1)
        }
        for loader in loaders.values():
            train_rate(timed, loader, 0)  # warm-up (and the worker's start)
        rates: dict[int, list[float]] = {0: [], 1: []}
        for r in range(args.rounds):
            for workers in (0, 1) if r % 2 == 0 else (1, 0):
                rates[workers].append(train_rate(timed, loaders[workers], r + 1))
        in_loop, ahead = (statistics.median(rates[w]) for w in (0, 1))
        print(f"{label}: workers=0 {in_loop:.0f} img/s, workers=1 {ahead:.0f} img/s")
        rows.append(
            {
                "name": label,
                "workers_0_images_per_s": round(in_loop, 1),
                "workers_1_images_per_s": round(ahead, 1),
                "ratio": round(ahead / in_loop, 3),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (<= cores)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="resnet20 steps per round")
    parser.add_argument("--batches", type=int, default=4, help="augmented batches per round")
    parser.add_argument(
        "--train-batches", type=int, default=8, help="batches per round of the worker race"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: check the script")
    args = parser.parse_args()
    if args.dry_run:
        args.batch_size, args.rounds, args.steps, args.batches, args.train_batches = 8, 1, 1, 1, 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    device = torch.device("cpu")
    timed = build("resnet20", Variant(), device)
    batch = random_batch(args.batch_size, device)
    time_rate(timed, batch, 2)  # warm-up: allocation, kernel choice
    loaders = {
        label: augmentation_loader(options, args.batch_size, args.batches)
        for label, options in AUGMENTATIONS
    }
    for loader in loaders.values():
        loader_rate(loader, 0)
    rates: dict[str, list[float]] = {"resnet20 step": [], **{label: [] for label in loaders}}
    for r in range(args.rounds):
        order = list(rates) if r % 2 == 0 else list(rates)[::-1]
        for name in order:
            if name == "resnet20 step":
                rates[name].append(time_rate(timed, batch, args.steps))
            else:
                rates[name].append(loader_rate(loaders[name], r + 1))
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items())
        )

    step = statistics.median(rates["resnet20 step"])
    rows = []
    for name, values in rates.items():
        median = statistics.median(values)
        share = None if name == "resnet20 step" else (1 / median) / (1 / median + 1 / step)
        rows.append(
            {
                "name": name,
                "images_per_s": round(median, 1),
                "min": round(min(values), 1),
                "max": round(max(values), 1),
                "epoch_share": None if share is None else round(share, 4),
            }
        )
    print(f"\nbatch {args.batch_size}, {args.threads} thread(s), medians of {args.rounds} rounds")
    print("| | images/s | min-max | share of a resnet20 epoch |\n|---|---:|---:|---:|")
    for row in rows:
        share = "" if row["epoch_share"] is None else f"{row['epoch_share']:.1%}"
        print(
            f"| {row['name']} | {row['images_per_s']:.0f} | {row['min']:.0f}-{row['max']:.0f} "
            f"| {share} |"
        )
    worker_rows = compare_workers(timed, args)
    print("\n| policy | workers=0 images/s | workers=1 images/s | ratio |\n|---|---:|---:|---:|")
    for row in worker_rows:
        print(
            f"| {row['name']} | {row['workers_0_images_per_s']:.0f} "
            f"| {row['workers_1_images_per_s']:.0f} | {row['ratio']:.2f} |"
        )
    if args.json:
        result = provenance(args.threads) | {
            "args": {
                k: getattr(args, k)
                for k in ("batch_size", "rounds", "steps", "batches", "train_batches")
            },
            "dry_run": args.dry_run,
            "rows": rows,
            "workers": worker_rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's rows: each augmentation's images/s beside the resnet20 step, then the
    worker race where it ran."""
    rows = []
    for r in result["rows"]:
        share = "" if r["epoch_share"] is None else page.percent(round(r["epoch_share"], 3))
        name = r["name"] if r["epoch_share"] is None else f"`{r['name']}`"
        spread = f"{page.number(r['min'])}-{page.number(r['max'])}"
        rows.append([name, page.number(r["images_per_s"]), spread, share])
    args = result["args"]
    setting = (
        f"Batch {args['batch_size']}, medians of "
        f"{page.count(args['rounds'], 'alternating round')} "
        f"({page.count(args['steps'], 'resnet20 step')} and {args['batches']} augmented batches "
        "each). Every augmentation is crop + flip and the option named; share: augmentation "
        "time / (augmentation + resnet20 step) per image."
    )
    head = ["per batch", "images/s", "min-max", "share of a resnet20 epoch"]
    text = f"{setting}\n\n{page.table(head, 'lrrr', rows)}"
    if not result.get("workers"):
        return text
    raced = [
        [
            f"`{r['name']}`",
            page.number(r["workers_0_images_per_s"]),
            page.number(r["workers_1_images_per_s"]),
            f"{r['ratio']:.2f}",
        ]
        for r in result["workers"]
    ]
    head = ["policy", "`augment.workers=0`", "`augment.workers=1`", "ratio"]
    return (
        f"{text}\n\nTraining resnet20 on each policy's batches, {args['train_batches']} batches "
        "a round, the batches made in the training loop or prepared ahead by one worker "
        f"process (images/s, medians of the same rounds):\n\n{page.table(head, 'lrrr', raced)}"
    )


SECTION = page.Section(
    heading="Augmentation cost",
    about=(
        "`scripts/bench/augment.py` times, in one process and alternating, a resnet20 training "
        "step (fp32, Adam 1e-3, one fixed batch in memory) and each augmentation's training "
        "batches (cut from a split of random 8-bit images, then crop + flip and the policy, "
        "cutout, MixUp or CutMix that `augment.*` sets), and gives each one's share of an epoch "
        "that augments and trains one after the other on the same cores. The per-image "
        "policies run torchvision's transforms image by image. Then it trains resnet20 on each "
        "policy's batches with `augment.workers=0` and `1`, alternating.\n\n"
        "```bash\n"
        "python scripts/bench/augment.py --threads 2 --json docs/benchmarks/augment-<label>.json\n"
        "```"
    ),
    body=page_body,
)

if __name__ == "__main__":
    sys.exit(main())
