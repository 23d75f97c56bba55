"""The saving of pruning, measured: the same Optuna search (`hparams_search=optuna`, same
sampler seed, same trials asked) run with `hydra.sweeper.pruner.name=none` and with one or
more pruners, one after the other in one run, on the same machine, for each sampler seed in
`--seeds` (seed by seed, so that a machine's drift falls on every pruner). Prints, per pruner,
the epochs trained (and how many times fewer than without pruning), the trials pruned, the
training time summed over its trials (the epochs' own times, from metrics.json), the search's
wall time and its best validation accuracy, as a Markdown table: means +- std over the seeds.

    python scripts/bench/search.py --root /path/to/cifar10-jpeg --trials 24 --epochs 8 \\
        --model lenet5 --max-per-class 1000 --val-size 2000 --seeds 0 1 --threads 1 \\
        --pruners none median successive_halving --json search.json

Without --root it runs on synthetic data (a dry run: the numbers mean nothing). The epochs,
pruned trials and accuracies do not depend on the machine's load; the times do.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import cpu_model, provenance
from omegaconf import OmegaConf

from cifar_exp.components.pruning import PRUNERS
from cifar_exp.records.atomic import write_json

DEFAULT = "median"  # the sweeper's default pruner (conf/hydra/sweeper/cifar_exp_optuna.yaml)


def data_overrides(args: argparse.Namespace, folder: Path) -> list[str]:
    if args.root is None:
        return ["dataset=synthetic", "dataset.train_size=512", "dataset.test_size=128"]
    return [
        "dataset=imagefolder",
        f"dataset.root={args.root.absolute()}",
        f"dataset.max_per_class={args.max_per_class}",
        f"dataset.cache_dir={folder / 'cache'}",
    ]


def run_search(args: argparse.Namespace, folder: Path, pruner: str, seed: int) -> dict:
    """One search into folder/<pruner>-seed<seed>; what it trained and found."""
    sweep_dir = folder / f"{pruner}-seed{seed}"
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
        "trainer.log_images=false",
        "device=cpu",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.sampler.seed={seed}",
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
    return {
        "pruner": pruner,
        "seed": seed,
        "train_s": train_s,
        "wall_s": wall,
        "epochs": epochs,
        "pruned": pruned,
        "best": float(best),
    }


def spread(values: list[float], digits: int) -> str:
    """mean, or mean +- std over more than one seed."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def table(results: list[dict], args: argparse.Namespace) -> str:
    """One row per pruner, over the sampler seeds: means (+- std), each seed's best."""
    total = args.trials * args.epochs
    lines = [
        f"| pruner | seeds | epochs trained (of {total}) | fewer epochs | trials pruned "
        "| training time | search wall time | best val acc | best val acc per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = [r["epochs"] for r in results if r["pruner"] == "none"]
    for pruner in args.pruners:
        rows = [r for r in results if r["pruner"] == pruner]
        epochs = [r["epochs"] for r in rows]
        fewer = f"{statistics.mean(baseline) / statistics.mean(epochs):.2f}x" if baseline else "-"
        label = f"{pruner} (default)" if pruner == DEFAULT else pruner
        cells = [
            label,
            str(len(rows)),
            spread(epochs, 1),
            fewer,
            spread([r["pruned"] for r in rows], 1),
            f"{spread([r['train_s'] for r in rows], 0)} s",
            f"{spread([r['wall_s'] for r in rows], 0)} s",
            spread([r["best"] for r in rows], 4),
            ", ".join(f"{r['best']:.4f}" for r in rows),
        ]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="the JPEG CIFAR-10 folder (default: synthetic)")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--max-per-class", type=int, default=1000, help="training images kept")
    parser.add_argument("--val-size", type=int, default=2000, help="of them held out for val")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="the sampler's seeds, a search each"
    )
    parser.add_argument(
        "--pruners", nargs="+", default=["none", DEFAULT], choices=PRUNERS, help="in this order"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("bench-search"), help="work folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.out.absolute()
    # Seed by seed, every pruner within a seed, so that a machine's drift falls on all.
    results = [
        run_search(args, folder, pruner, seed) for seed in args.seeds for pruner in args.pruners
    ]
    print(" ".join(sys.argv))
    print(f"{cpu_model()}, {os.cpu_count()} cores, {datetime.date.today()}")
    print(table(results, args))
    if args.json is not None:
        write_json(args.json, {**provenance(args.threads), "results": results})


if __name__ == "__main__":
    main()
