"""What the Images tab costs: one LeNet5 epoch with and without `trainer.log_images`.

    python scripts/bench/dashboard.py --root ../shared/datasets/cifar10-jpeg

End to end: `python -m cifar_exp.run` trains one epoch (batch 32, evaluation on the 10,000
test images) with trainer.log_images=true and =false, alternating for --rounds rounds, and
compares the medians of the training loop's wall time (`final.wall_s`: the batch grid, the
confusion matrix and the end-of-run figures included). One epoch is the worst case: the
once-per-run pictures are not spread over several epochs.

In process, the parts alone (the medians of --repeats): the evaluation with and without
gathering the confusion matrix and the mistakes, and each picture's drawing and writing,
as a share of the median epoch of the runs without pictures. The machine's noise hides a
2% difference end to end; these parts do not hide.

Each tracker of `tracker=[...]` alone, in process too: one epoch's logging (the per-step
points of a LeNet5 epoch at batch 32 and trainer.log_every_n_steps=50, then the epoch's
values; medians of --repeats epochs), and opening its run once (the import included:
MLflow's takes seconds), into a store in a temporary folder (MLflow: a SQLite file; W&B:
offline).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import page
import torch
from benchlib import median_seconds, provenance, seconds

from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.augment import build_transforms
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.models import MODELS
from cifar_exp.tracking import EPOCH_TAGS, RunTracker
from cifar_exp.tracking.pictures import EvalDetails, Pictures
from cifar_exp.training.engine import evaluate

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = os.environ.get("CIFAR10_JPEG", str(REPO.parent / "shared/datasets/cifar10-jpeg"))
# --dry-run: a tiny synthetic data set, so the script itself can be tested in seconds.
DRY = ["dataset=synthetic", "dataset.train_size=256", "dataset.test_size=128"]


def run_epoch(data: list[str], log_images: bool, threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as run_dir:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cifar_exp.run",
                *data,
                "model=lenet5",
                "device=cpu",
                "trainer.epochs=1",
                "trainer.batch_size=32",
                f"trainer.num_threads={threads}",
                "trainer.progress_bar=false",
                f"trainer.log_images={str(log_images).lower()}",
                f"hydra.run.dir={run_dir}",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"cifar_exp.run failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {"wall_s": metrics["final"]["wall_s"], "epoch_s": metrics["epochs"][0]["epoch_s"]}


def parts_alone(options: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each picture-related part, on the real test split and classes."""
    data = load_dataset(options)
    augment = {"normalize": True, "mean": None, "std": None, "crop_padding": 4, "flip": True}
    train_transform, eval_transform = build_transforms(augment, data.train)
    device = torch.device("cpu")
    train = BatchLoader(data.train, 32, device, shuffle=True, transform=train_transform)
    test = BatchLoader(data.test, 500, device, transform=eval_transform)
    torch.manual_seed(0)
    net = MODELS.build({"name": "lenet5", "num_classes": len(data.classes)})
    details = EvalDetails()
    evaluate(net, test, details=details)
    with tempfile.TemporaryDirectory() as folder:
        tracker = RunTracker(Path(folder), {"params": sum(p.numel() for p in net.parameters())})
        pictures = Pictures(tracker, list(data.classes), train_transform, eval_transform, net)
        # The first figure of a process also imports matplotlib: a once-per-run cost.
        first = seconds(lambda: pictures.evaluated("test", 1, details))
        times: dict[str, list[float]] = {"evaluate": [], "evaluate_gathering": []}
        for _ in range(repeats):  # alternating: the machine's load hits both alike
            times["evaluate"].append(seconds(lambda: evaluate(net, test)))
            times["evaluate_gathering"].append(
                seconds(lambda: evaluate(net, test, details=EvalDetails()))
            )
        result = {key: statistics.median(values) for key, values in times.items()}
        result["first_figure"] = first
        result["confusion_figure"] = median_seconds(
            lambda: pictures.evaluated("test", 1, details), repeats
        )
        result["batch_grid"] = median_seconds(lambda: pictures.started(train, True), repeats)
        result["end_figures"] = median_seconds(lambda: pictures.finished(1, details), repeats)
        tracker.writer.close()
    result["steps_per_epoch"] = math.ceil(len(data.train) / 32)
    return result


TRACKERS = ("tensorboard", "csv", "mlflow", "wandb")
LOG_EVERY = 50  # trainer.log_every_n_steps' default


def tracker_options(name: str, folder: Path) -> dict | None:
    """The tracker's options for a run into `folder`; None when its package is absent."""
    if name in ("mlflow", "wandb") and importlib.util.find_spec(name) is None:
        return None
    if name == "mlflow":
        return {"tracking_uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "bench"}
    return {"mode": "offline"} if name == "wandb" else {}


def log_epoch(tracker: RunTracker, epoch: int, steps: int, values: dict[str, float]) -> None:
    """What the training loop logs in epoch `epoch` of `steps` optimizer steps."""
    first = (epoch - 1) * steps
    for step in range(first + LOG_EVERY, first + steps + 1, LOG_EVERY):
        tracker.log_step(step, 2.0, 0.001)
    tracker.log_epoch(epoch, values, step=first + steps)


def tracker_costs(steps_per_epoch: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of one epoch's logging into each tracker alone, and of opening its run."""
    values = {key: 0.5 for key in EPOCH_TAGS}  # every per-epoch value the loop can log
    costs = {}
    for name in TRACKERS:
        with tempfile.TemporaryDirectory() as folder:
            options = tracker_options(name, Path(folder))
            if options is None:
                print(f"{name}: not installed, not measured", flush=True)
                continue
            os.environ.setdefault("WANDB_SILENT", "true")
            start = time.perf_counter()
            tracker = RunTracker(Path(folder), {"model": "lenet5"}, trackers={name: options})
            tracker.start({"model.name": "lenet5", "optimizer.lr": 0.001}, {"overrides": ""})
            opened = time.perf_counter() - start
            epochs = [
                seconds(lambda e=e, t=tracker: log_epoch(t, e, steps_per_epoch, values))
                for e in range(1, repeats + 1)
            ]
            tracker.finish({"epochs": repeats, "test_acc": 0.5, "test_loss": 1.0})
        costs[name] = {"epoch": statistics.median(epochs), "open": opened}
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="of each part, in process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (<= cores)")
    parser.add_argument("--dry-run", action="store_true", help="tiny synthetic data, 1 round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as cache:
        if args.dry_run:
            data, options = DRY, {"name": "synthetic", "train_size": 256, "test_size": 128}
            args.rounds = 1
        else:
            root = args.root.expanduser().absolute()
            if not (root / "train").is_dir():
                sys.exit(f"no image folder at {root}; pass --root <folder with train/ and test/>")
            options = {"name": "imagefolder", "root": str(root), "cache_dir": cache}
            data = ["dataset=imagefolder", f"dataset.root={root}", f"dataset.cache_dir={cache}"]
        parts = parts_alone(options, args.repeats)  # also fills the cache for the runs
        trackers = tracker_costs(parts.pop("steps_per_epoch"), args.repeats)
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for round_ in range(args.rounds):
            for log_images in (True, False) if round_ % 2 == 0 else (False, True):
                runs[log_images].append(run_epoch(data, log_images, args.threads))
            print(
                f"round {round_ + 1}: wall_s with pictures {runs[True][-1]['wall_s']:.2f}, "
                f"without {runs[False][-1]['wall_s']:.2f}",
                flush=True,
            )
    result = measured(parts, runs) | {"trackers_s": trackers, "log_every_n_steps": LOG_EVERY}
    report(result)
    if args.json:
        extra = {"rounds": args.rounds, "repeats": args.repeats, "dry_run": args.dry_run}
        args.json.write_text(json.dumps(provenance(args.threads) | extra | result, indent=2))


def measured(parts: dict[str, float], runs: dict[bool, list[dict[str, float]]]) -> dict:
    """The medians the report shows (seconds): the epoch without pictures, each part, and
    the one-epoch runs' wall time with and without pictures."""

    def median(log_images: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs[log_images])

    return {
        "epoch_s": median(False, "epoch_s"),
        "parts_s": {
            "gathering": parts["evaluate_gathering"] - parts["evaluate"],
            "confusion_figure": parts["confusion_figure"],
            "batch_grid": parts["batch_grid"],
            "end_figures": parts["end_figures"],
            "matplotlib_import": parts["first_figure"] - parts["confusion_figure"],
        },
        "wall_s": {"with_pictures": median(True, "wall_s"), "without": median(False, "wall_s")},
        "runs_each": len(runs[True]),
    }


def report(result: dict) -> None:
    epoch, parts = result["epoch_s"], result["parts_s"]
    per_eval = parts["gathering"] + parts["confusion_figure"]
    once = parts["batch_grid"] + parts["end_figures"] + parts["matplotlib_import"]
    rows = [
        ("gathering confusion + mistakes in one evaluation", parts["gathering"]),
        ("confusion-matrix figure (each evaluation)", parts["confusion_figure"]),
        ("training-batch grid (once per run)", parts["batch_grid"]),
        ("mistakes + per-class figures (once, at the end)", parts["end_figures"]),
        ("first figure's extra time: importing matplotlib (once)", parts["matplotlib_import"]),
        ("per epoch (gathering + confusion figure)", per_eval),
        ("once per run (grid + end figures + import)", once),
    ]
    print(f"\nmedian epoch without pictures: {epoch:.2f} s")
    print("| part | median ms | share of an epoch |\n|---|---:|---:|")
    for name, part_s in rows:
        print(f"| {name} | {part_s * 1000:.1f} | {part_s / epoch:.2%} |")
    print(f"\nthe trackers, each alone (log_every_n_steps={result['log_every_n_steps']}):")
    print("| tracker | per epoch, median ms | share of an epoch | opening its run, ms |")
    print("|---|---:|---:|---:|")
    for name, cost in result["trackers_s"].items():
        print(
            f"| {name} | {cost['epoch'] * 1000:.1f} | {cost['epoch'] / epoch:.2%} | "
            f"{cost['open'] * 1000:.0f} |"
        )
    with_, without = result["wall_s"]["with_pictures"], result["wall_s"]["without"]
    print(
        f"\nend to end, one epoch (median wall_s of {result['runs_each']} runs each): with "
        f"pictures {with_:.2f} s, without {without:.2f} s, ratio {with_ / without:.3f}"
    )


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's parts, each as a share of the epoch, the whole runs, then the trackers."""
    epoch, parts = result["epoch_s"], result["parts_s"]
    per_epoch = parts["gathering"] + parts["confusion_figure"]
    once = parts["batch_grid"] + parts["end_figures"] + parts["matplotlib_import"]
    named = [
        ("gathering the confusion matrix and the mistakes during an evaluation", "gathering"),
        ("drawing and writing the confusion matrix", "confusion_figure"),
        ("**every epoch, together**", per_epoch),
        ("the training-batch grid (once per run)", "batch_grid"),
        ("misclassified images + per-class accuracy (once, at the end)", "end_figures"),
        ("importing matplotlib for the first figure (once)", "matplotlib_import"),
        ("**once per run, together**", once),
    ]
    rows = []
    for name, key in named:
        seconds = parts[key] if isinstance(key, str) else key
        rows.append([name, page.milliseconds(seconds), f"{seconds / epoch:.2%}"])
    head = ["part", "median", f"share of a {epoch:.2f} s epoch"]
    wall = result["wall_s"]
    return (
        f"Parts: medians of {result['repeats']} in one process; whole runs: "
        f"{page.count(result['rounds'], 'alternating round')}.\n\n"
        f"{page.table(head, 'lrr', rows)}\n\n"
        f"End to end, one-epoch runs (the worst case: every one-time cost in one epoch) took "
        f"{wall['with_pictures']:.2f} s with pictures and {wall['without']:.2f} s without "
        f"(medians of {page.count(result['runs_each'], 'run')} each, "
        f"{wall['with_pictures'] / wall['without']:.2f}x)." + page_trackers(result)
    )


def page_trackers(result: dict) -> str:
    """The trackers' table of a result, when it measured them."""
    if "trackers_s" not in result:
        return ""
    epoch = result["epoch_s"]
    rows = [
        [f"`{name}`", page.milliseconds(c["epoch"]), f"{c['epoch'] / epoch:.2%}"]
        + [page.milliseconds(c["open"])]
        for name, c in result["trackers_s"].items()
    ]
    head = ["tracker (alone)", "one epoch's logging", "share of the epoch", "opening its run"]
    return (
        f"\n\nEach tracker alone, in the same process: one epoch's logging (the per-step points "
        f"every {result['log_every_n_steps']} steps, then the epoch's values; median of "
        f"{result['repeats']} epochs) and opening its run once, its import included.\n\n"
        + page.table(head, "lrrr", rows)
    )


SECTION = page.Section(
    heading="Dashboard pictures",
    about=(
        "`scripts/bench/dashboard.py` times, on the JPEG CIFAR-10 (LeNet5, batch 32, one "
        "epoch, evaluation on the 10,000 test images), each part of the pictures of the "
        "Images tab in one process, and whole runs with `trainer.log_images=true` and "
        "`false`, alternating; since 2026-12-02 also each tracker of `tracker=[...]` alone "
        "(docs/trackers.md)."
    ),
    body=page_body,
)

if __name__ == "__main__":
    main()
