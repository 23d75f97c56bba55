"""One training epoch of speedrun94 against airbench94's own loop, side by side in one process.

    python scripts/bench/epoch_vs_airbench.py --root <CIFAR-10 image folder> --rounds 4

The airbench race (time_to_accuracy.py --contenders airbench94) times whole runs, each
cifar-exp run in a fresh process; on a 2-core CPU one run's clock differs from the next by
about 10%, more than a few seeds can resolve. This bench times one steady-state epoch alone,
three ways, on the very tensors and in one process, alternating every round (the order
reversed every other round, so a machine's drift falls on all three):
- `Trainer.epoch`: cifar-exp's own loop for experiment=speedrun94 (its step with the
  gradient bookkeeping, the per-batch counters, the heartbeat, the weight average); the
  epoch's train/train_s, its evaluation left out;
- a bare loop over the same Trainer's loader, model, optimizer, scheduler and weight average:
  autocast, cross-entropy with label smoothing, backward, step, and nothing else, so its gap
  to `Trainer.epoch` is what the loop's machinery costs;
- airbench94's own code (airbench_contender.train, 2 epochs; the second one's clock, as its log
  prints it): its loader, its network, its optimizer, its Lookahead.
Each is its epoch 2: the whitening bias trains in all three (airbench trains it for its first
3 epochs; a frozen one saves the input gradient of the first conv, a few percent of an epoch).
The table gives each one's median seconds and images/s, and its median over airbench94's.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import airbench_contender
import page
import torch
import torch.nn.functional as F
from benchlib import provenance, run_config, synchronize
from data import DEFAULT_ROOT
from time_to_accuracy import airbench_data, check_paths, subset_folder

from cifar_exp.errors import UserError
from cifar_exp.models.base import start_epoch
from cifar_exp.training.engine import Trainer

log = logging.getLogger("bench")
EPOCH = 2  # the whitening bias trains (model.whiten_bias_epochs 3), as in airbench's epoch 2
LOOPS = ("Trainer.epoch", "bare loop", "airbench94")


def build(root: Path, widths: list[int], threads: int, cache: Path | None, work: Path) -> Trainer:
    """experiment=speedrun94's Trainer on `root`, composed by Hydra as `cifar_exp.run` does,
    with epochs enough that its schedule never ends and no evaluation inside an epoch."""
    from cifar_exp.training.build import build_trainer

    overrides = [
        "experiment=speedrun94",
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.val_size=0",
        f"model.widths=[{','.join(map(str, widths))}]",
        f"trainer.num_threads={threads}",
        "trainer.epochs=1000",
        "trainer.last_epoch_fraction=1",
        "trainer.eval_every=1000",
        "trainer.progress_bar=false",
        *([f"dataset.cache_dir={cache}"] if cache else []),
    ]
    trainer, _ = build_trainer(run_config(overrides), work / "run")
    return trainer


def trainer_epoch(trainer: Trainer) -> float:
    """cifar-exp's epoch, as a run trains it: its train_s."""
    trainer.epoch(EPOCH)
    return trainer.last_train["train_s"]


def bare_epoch(trainer: Trainer) -> float:
    """The same epoch's arithmetic with nothing around it, on the Trainer's own parts."""
    loader, model, optimizer = trainer.loaders.train, trainer.model, trainer.optimizer
    smoothing, scaler = trainer.settings.label_smoothing, trainer.precision.scaler
    average, progress = trainer.average, trainer.progress
    loader.set_epoch(EPOCH, start_batch=0)
    start_epoch(trainer.net, EPOCH)
    model.train()
    synchronize(loader.device)
    start = time.perf_counter()
    for images, labels in loader:
        with trainer.precision.autocast():
            loss = F.cross_entropy(model(images), labels, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # the scaler: a no-op but under fp16
        scaler.step(optimizer)
        scaler.update()
        trainer.scheduler.step()
        progress.step += 1
        if average is not None:
            average.update(progress.step)
    synchronize(loader.device)
    seconds = time.perf_counter() - start
    if average is not None:
        average.epoch_done()  # as Trainer.epoch does, after its clock's end
    return seconds


def airbench_epoch(data_dir: Path, device: torch.device, widths: list[int]) -> float:
    """airbench94's own second epoch (a fresh run of 2 epochs: its first is its warm-up)."""
    run = airbench_contender.train(data_dir, device, 0, widths=tuple(widths), epochs=2)
    return run.epoch_s[1]


def summary(seconds: dict[str, list[float]], images: int) -> list[dict]:
    reference = statistics.median(seconds["airbench94"])
    rows = []
    for name, values in seconds.items():
        median = statistics.median(values)
        rows.append(
            {
                "loop": name,
                "median_s": round(median, 2),
                "min_s": round(min(values), 2),
                "max_s": round(max(values), 2),
                "images_per_s": round(images / median, 1),
                "vs_airbench94": round(median / reference, 3),
                "seconds": [round(s, 3) for s in values],
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| loop | epoch (median) | min-max | images/s | vs airbench94's |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['loop']} | {r['median_s']:.2f} s | {r['min_s']:.2f}-{r['max_s']:.2f} s "
            f"| {r['images_per_s']:.0f} | {r['vs_airbench94']:.2f}x |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    parser.add_argument("--rounds", type=int, default=4, help="epochs of each loop")
    parser.add_argument("--widths", type=int, nargs=3, default=[32, 128, 128])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (<= cores)")
    parser.add_argument(
        "--limit-train", type=int, help="train on N images (the first N/10 of each class)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--dry-run", action="store_true", help="1 round at widths 8/16/16: seconds, no figure"
    )
    args = parser.parse_args()
    if args.dry_run:
        args.rounds, args.widths = 1, [8, 16, 16]
    for name in ("rounds", "threads", "limit_train"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, not {value}")
    if min(args.widths) < 1:
        parser.error(f"--widths must be positive, not {args.widths}")
    if not airbench_contender.available():
        parser.error("this bench races airbench94's code: pip install airbench")
    check_paths(parser, args)
    return args


def race(args: argparse.Namespace, work: Path) -> dict:
    root, cache = args.root, None
    if args.limit_train or args.dry_run:  # a subset, or test data: not in the user's cache
        cache = work / "cache"
    if args.limit_train:
        root = subset_folder(args.root, work / "data", {"train": args.limit_train, "test": None})
    caches = [f"dataset.cache_dir={cache}"] if cache else []
    data_dir = airbench_data(root, work, caches)
    trainer = build(root, args.widths, args.threads, cache, work)
    images = len(trainer.loaders.train) * trainer.settings.batch_size
    device = trainer.loaders.train.device
    log.info("%s", airbench_contender.package_for(device)[2])
    if device.type == "cuda":  # airbench's main() warms the GPU up before it times
        airbench_contender.train(data_dir, device, 0, warmup=True)
    # The first epochs pick kernels for every shape (the first with the bias trained too):
    # untimed. Each airbench94 run's first epoch is its own warm-up.
    log.info("warm-up: cifar-exp's epochs 1 and %d, untimed", EPOCH)
    trainer.epoch(1)
    trainer_epoch(trainer)
    seconds: dict[str, list[float]] = {name: [] for name in LOOPS}
    loops = {
        "Trainer.epoch": lambda: trainer_epoch(trainer),
        "bare loop": lambda: bare_epoch(trainer),
        "airbench94": lambda: airbench_epoch(data_dir, device, args.widths),
    }
    for r in range(args.rounds):
        for name in LOOPS if r % 2 == 0 else LOOPS[::-1]:
            seconds[name].append(loops[name]())
        shown = ", ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items())
        log.info("round %d/%d: %s", r + 1, args.rounds, shown)
    trainer.tracker.writer.close()
    return {
        "torch_device": str(device),
        "airbench94": airbench_contender.package_for(device)[2],
        "images_per_epoch": images,
        "rows": summary(seconds, images),
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as work:
            result = race(args, Path(work))
    except UserError as err:
        sys.exit(str(err))
    result = provenance(args.threads) | {
        "widths": args.widths,
        "rounds": args.rounds,
        "dry_run": args.dry_run,
        "bench_s": round(time.perf_counter() - start, 1),
        **result,
    }
    cpu = result["cpu"]
    print(f"\n{result['command']}\n{result['date']}; {cpu['model']}, {cpu['cores']} cores")
    print(f"{result['torch_device']}, {args.threads} threads, torch {result['torch']}")
    print(f"widths {args.widths}, {result['images_per_epoch']} images per epoch (epoch {EPOCH})")
    print(f"{args.rounds} rounds, alternating; airbench94: {result['airbench94']}\n")
    print(table(result["rows"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's loops: each one's epoch, median of the rounds."""
    rows = [
        [
            r["loop"],
            f"{r['median_s']:.2f} s",
            f"{r['min_s']:.2f}-{r['max_s']:.2f} s",
            page.number(r["images_per_s"]),
            f"{r['vs_airbench94']:.2f}x",
        ]
        for r in result["rows"]
    ]
    head = ["loop", "epoch (median)", "min-max", "images/s", "vs airbench94's"]
    setting = (
        f"Widths {'/'.join(map(str, result['widths']))}, "
        f"{page.number(result['images_per_epoch'])} images an epoch (its epoch 2, the "
        f"whitening bias trained), medians of {page.count(result['rounds'], 'alternating round')} "
        f"on `{result['torch_device']}`. airbench94: {result['airbench94']}."
    )
    return f"{setting}\n\n{page.table(head, 'lrrrr', rows)}"


SECTION = page.Section(
    heading="One epoch against airbench94's loop",
    about=(
        "`scripts/bench/epoch_vs_airbench.py` times one steady-state training epoch three ways, "
        "in one process on the same tensors, alternating every round: cifar-exp's "
        "`Trainer.epoch` for `experiment=speedrun94` (its `train_s`), a bare loop over the "
        "same Trainer's loader, model, optimizer, schedule and weight average (autocast, loss, "
        "backward, step and nothing else), and airbench94's own code (its second epoch). The "
        "gap between the first two is what cifar-exp's loop adds; the last ratio is the "
        "epoch's speed against the reference, free of the run-to-run spread that the races "
        "above carry.\n\n"
        "```bash\n"
        "python scripts/bench/epoch_vs_airbench.py --root <CIFAR-10 image folder> --rounds 4\n"
        "```"
    ),
    body=page_body,
)


if __name__ == "__main__":
    main()
