"""The asynchronous search against the batch search: the same Optuna search, side by side.

    python scripts/bench/search_modes.py --root /path/to/cifar10-jpeg --trials 12 --workers 4 \\
        --epochs 1 2 4 32 --seeds 0 1 2 --json docs/benchmarks/search_modes-epyc-2026-12-07.json

Both run `hparams_search=optuna` (LeNet5) under the joblib launcher with `--workers` jobs side
by side and `hydra.sweeper.n_jobs` the same, on --root's images (a class-balanced cut of
`--max-per-class` per class; without --root, synthetic data, a dry run), with a seeded random
sampler (so both modes ask for the same parameters in the same order and train them alike: the
same best value) and trials of deliberately uneven length, `trainer.epochs` drawn from
`--epochs`. The batch mode (`hydra.sweeper.mode=batch`) launches `--workers` trials and waits
for the slowest before it asks again; the asynchronous mode (`mode=async`) starts a trial the
moment a worker is free. Per mode: the search's wall time, the workers' idle share (1 - the
jobs' summed wall times, from their manifests, over workers x the search's wall time) and the
best value. One round per sampler seed (`--seeds`), the modes in alternating order; the table
gives medians. Without pruning: a pruner's decisions depend on which trials finished first,
which the mode changes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import page
from benchlib import provenance, run_config
from omegaconf import OmegaConf

MODES = ("batch", "async")


def data_overrides(args: argparse.Namespace, folder: Path) -> list[str]:
    """Synthetic data (every trial may reach 100%: a check of the script), or --root's image
    folder cut to --max-per-class images of each class, decoded once into a shared cache."""
    if args.root is None:
        return [
            "dataset=synthetic",
            "dataset.train_size=512",
            "dataset.test_size=128",
            "dataset.val_size=128",
        ]
    return [
        "dataset=imagefolder",
        f"dataset.root={args.root.absolute()}",
        f"dataset.max_per_class={args.max_per_class}",
        f"dataset.val_size={args.val_size}",
        f"dataset.cache_dir={folder / 'cache'}",
    ]


def search(mode: str, seed: int, args: argparse.Namespace, sweep_dir: Path) -> dict:
    """One search into sweep_dir; its wall time, idle share and best value."""
    epochs = ",".join(str(e) for e in args.epochs)
    command = [
        sys.executable,
        "-m",
        "cifar_exp.run",
        "hparams_search=optuna",
        "model=lenet5",
        *data_overrides(args, sweep_dir.parent),
        f"trainer.epochs=choice({epochs})",
        "optimizer.lr=tag(log, interval(1e-4, 3e-2))",
        "trainer.batch_size=64",
        "trainer.num_threads=1",
        "trainer.log_images=false",
        "device=cpu",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.workers}",
        f"hydra.sweeper.n_jobs={args.workers}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.mode={mode}",
        "hydra.sweeper.pruner.name=none",
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        f"hydra.sweeper.sampler.seed={seed}",
        "~hydra.sweeper.sampler.n_startup_trials",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=sweep_dir.parent, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the {mode} search failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    busy = 0.0
    for manifest in sweep_dir.glob("[0-9]*_*/manifest.json"):
        record = json.loads(manifest.read_text())
        ends = [datetime.datetime.fromisoformat(record[k]) for k in ("start_time", "end_time")]
        busy += (ends[1] - ends[0]).total_seconds()
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.mode == mode, f"asked for {mode}, the search ran {results.mode}"
    return {
        "mode": mode,
        "seed": seed,
        "wall_s": wall,
        "idle_share": max(0.0, 1 - busy / (args.workers * wall)),
        "best": float(results.best_value),
    }


def page_body(result: dict) -> str:
    """Per mode: the median wall time and idle share over the seeds, the median of each
    seed's ratio to batch, the best value per seed."""
    runs = result["searches"]
    by = {(r["mode"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    rows = []
    for mode in MODES:
        mine = [by[mode, s] for s in seeds]
        ratio = statistics.median(by[mode, s]["wall_s"] / by["batch", s]["wall_s"] for s in seeds)
        rows.append(
            [
                "asynchronous" if mode == "async" else "batch",
                f"{statistics.median(r['wall_s'] for r in mine):.0f} s",
                ", ".join(f"{r['wall_s']:.0f} s" for r in mine),
                f"{ratio:.2f}x",
                page.percent(round(statistics.median(r["idle_share"] for r in mine), 3)),
                ", ".join(f"{r['best']:.4f}" for r in mine),
            ]
        )
    head = [
        "mode",
        "wall time (median)",
        "per seed",
        "of batch (median)",
        "workers idle",
        "best value per seed",
    ]
    args = result["args"]
    return (
        f"{args['trials']} trials on {args['workers']} workers, `trainer.epochs` drawn from "
        f"{args['epochs']}, sampler seeds {', '.join(map(str, seeds))}.\n\n"
        + page.table(head, "lrrrrl", rows)
    )


SECTION = page.Section(
    heading="Asynchronous search",
    about=(
        "`scripts/bench/search_modes.py` runs the same Optuna search in both of the sweeper's "
        "modes, one after the other in one run: `hydra.sweeper.mode=batch` launches n_jobs "
        "trials and waits for the slowest, `mode=async` starts a trial the moment a worker is "
        "free. Same seeded random sampler (the same trials, the same best value), trials of "
        "uneven length (`trainer.epochs` drawn from a spread), the joblib launcher, no "
        "pruning. The idle share is 1 minus the jobs' summed wall times over workers times "
        "the search's wall time.\n\n"
        "```bash\n"
        "python scripts/bench/search_modes.py --root <cifar10 folder> --trials 12 --workers 4 "
        "--epochs 1 2 4 32 --seeds 0 1 2 --json out.json\n"
        "```"
    ),
    body=page_body,
    title=lambda result: (
        f"{page.machine_title(result)}: {result['args']['workers']} workers on "
        f"{result['cpu']['cores']} cores"
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--root", type=Path, help="a CIFAR-10 image folder (default: synthetic)")
    parser.add_argument("--max-per-class", type=int, default=250, help="images kept per class")
    parser.add_argument("--val-size", type=int, default=500, help="of them held out for val")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="the sampler's seeds: a round each"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if min(args.trials, args.workers) < 1:
        parser.error("--trials and --workers must be >= 1")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.root is not None:  # decoded once before the clock starts, for both modes
            from cifar_exp.datasets import load_dataset

            load_dataset(run_config(data_overrides(args, Path(tmp))).dataset)
        for r, seed in enumerate(args.seeds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                runs.append(search(mode, seed, args, Path(tmp) / f"{mode}-{seed}"))
                print(f"seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
    result = {
        **provenance(threads=1),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "searches": runs,
    }
    result["args"]["json"] = None
    result["data"] = f"{args.root} ({args.max_per_class} images per class)" if args.root else None
    if args.root is None:
        result["dry_run"] = True
        del result["data"]
    print(page_body(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
