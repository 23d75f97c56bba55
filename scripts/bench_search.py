"""The saving of pruning, measured: the same Optuna search (`hparams_search=optuna`, same
sampler seed, same trials asked) run with `hydra.sweeper.pruner.name=none` and with the
default pruner, one after the other in one run, on the same machine. Prints, for each, the
training time summed over its trials (the epochs' own times, from metrics.json), the epochs
trained, the trials pruned and the best validation accuracy, as a Markdown table.

    python scripts/bench_search.py --root /path/to/cifar10-jpeg --trials 24 --epochs 4 \\
        --model resnet20 --max-per-class 1000 --val-size 2000

Without --root it runs on synthetic data (a dry run: the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

CONTENDERS = ("none", "median")


def data_overrides(args: argparse.Namespace, folder: Path) -> list[str]:
    if args.root is None:
        return ["dataset=synthetic", "dataset.train_size=512", "dataset.test_size=128"]
    return [
        "dataset=imagefolder",
        f"dataset.root={args.root.absolute()}",
        f"dataset.max_per_class={args.max_per_class}",
        f"dataset.cache_dir={folder / 'cache'}",
    ]


def run_search(args: argparse.Namespace, folder: Path, pruner: str) -> dict[str, float]:
    """One search into folder/<pruner>; what it trained and found."""
    sweep_dir = folder / pruner
    command = [
        sys.executable,
        "-m",
        "cifar_exp.run",
        "hparams_search=optuna",
        f"model={args.model}",
        *data_overrides(args, folder),
        f"dataset.val_size={args.val_size}",
        f"trainer.epochs={args.epochs}",
        f"trainer.num_threads={args.threads}",
        "device=cpu",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        f"hydra.sweeper.pruner.name={pruner}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the search with pruner {pruner} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    epochs, train_s, pruned = 0, 0.0, 0
    for metrics_file in sweep_dir.glob("[0-9]*_*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        epochs += len(metrics["epochs"])
        train_s += sum(e.get("epoch_s", 0.0) for e in metrics["epochs"])
        pruned += "pruned_at_epoch" in (metrics.get("final") or {})
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml").best_value
    return {"train_s": train_s, "wall_s": wall, "epochs": epochs, "pruned": pruned, "best": best}


def cpu_model() -> str:
    """The CPU's model name, as lscpu gives it (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        "| pruner | trials | epochs trained | trials pruned | training time | search wall time "
        "| best val acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for pruner, r in results.items():
        lines.append(
            f"| {pruner} | {args.trials} | {r['epochs']} of {args.trials * args.epochs} | "
            f"{r['pruned']} | {r['train_s']:.0f} s | {r['wall_s']:.0f} s | {r['best']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="the JPEG CIFAR-10 folder (default: synthetic)")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--max-per-class", type=int, default=1000, help="training images kept")
    parser.add_argument("--val-size", type=int, default=2000, help="of them held out for val")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("bench-search"), help="work folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out.absolute()
    results = {pruner: run_search(args, folder, pruner) for pruner in CONTENDERS}
    print(" ".join(sys.argv))
    print(f"{cpu_model()}, {os.cpu_count()} cores, {datetime.date.today()}")
    print(table(results, args))
    saving = results["none"]["epochs"] / max(1, results["median"]["epochs"])
    print(f"epochs: {saving:.2f}x fewer with the default pruner (median)")


if __name__ == "__main__":
    main()
