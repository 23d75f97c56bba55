"""Seed-style data pipeline vs cifar-exp's, one LeNet5 epoch each, side by side.

    python scripts/bench/data.py --root ../shared/datasets/cifar10-jpeg

A: the seed post's pipeline: torchvision ImageFolder + per-image ToTensor +
   DataLoader(batch_size=32, shuffle=True), LeNet5, Adam 1e-3, one epoch.
B: `python -m cifar_exp.run model=lenet5 dataset=imagefolder` with the same batch size,
   optimizer and epochs (a fresh process that starts from the tensor cache).
The two alternate for --rounds rounds; the script prints training images/s (the training
loop only, data loading included), the ratio of the medians, and test accuracy after the
epoch. First it measures the one-time decode of the folder and the cached load; each round
also times 300 batches of each pipeline without a model (the data path alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import page
import torch
import torch.nn.functional as F
from benchlib import provenance
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from cifar_exp.datasets import DataBundle, load_dataset
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.models import MODELS

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = os.environ.get("CIFAR10_JPEG", str(REPO.parent / "shared/datasets/cifar10-jpeg"))


def seed_loaders(root: Path) -> tuple[DataLoader, DataLoader]:
    """The seed post's loaders, on the image folder instead of torchvision's CIFAR10 class:
    ImageFolder + per-image ToTensor, batch 32, the training set shuffled."""
    to_tensor = transforms.ToTensor()
    train = DataLoader(
        datasets.ImageFolder(str(root / "train"), transform=to_tensor), batch_size=32, shuffle=True
    )
    test = DataLoader(datasets.ImageFolder(str(root / "test"), transform=to_tensor), batch_size=32)
    return train, test


def seed_train_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader
) -> tuple[int, float]:
    """One epoch of the seed post's training loop: (images seen, seconds, loading included)."""
    model.train()
    start = time.perf_counter()
    seen = 0
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen, time.perf_counter() - start


def seed_test_accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    """The seed post's evaluation: the fraction of the test images classified right."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


def seed_style_epoch(root: Path, seed: int) -> dict[str, float]:
    """The seed post's loop for one LeNet5 epoch: Adam 1e-3, cross-entropy, then the test."""
    torch.manual_seed(seed)
    train, test = seed_loaders(root)
    model = MODELS.build({"name": "lenet5"})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen, train_s = seed_train_epoch(model, optimizer, train)
    return {"images_per_s": seen / train_s, "test_acc": seed_test_accuracy(model, test)}


def loading_only(root: Path, bundle: DataBundle, batches: int) -> tuple[float, float]:
    """Images/s of each pipeline's batches alone, no model: (seed-style, cifar-exp)."""
    seed_loader = seed_loaders(root)[0]
    project_loader = BatchLoader(bundle.train, 32, torch.device("cpu"), shuffle=True)
    speeds = []
    for loader in (seed_loader, project_loader):
        start = time.perf_counter()
        seen = 0
        for _, labels in loader:
            seen += len(labels)
            if seen >= batches * 32:
                break
        speeds.append(seen / (time.perf_counter() - start))
    return speeds[0], speeds[1]


def model_steps_only(steps: int) -> float:
    """Images/s of LeNet5 + Adam training steps on one fixed batch of 32: no data loading at
    all, so no pipeline can train faster. It bounds the ratio either pipeline can reach."""
    torch.manual_seed(0)
    model = MODELS.build({"name": "lenet5"})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * 32 / (time.perf_counter() - start)


def project_epoch(root: Path, seed: int, threads: int, cache_dir: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cifar_exp.run",
                "model=lenet5",
                "dataset=imagefolder",
                f"dataset.root={root}",
                f"dataset.cache_dir={cache_dir}",
                "device=cpu",
                "optimizer=adam",
                "optimizer.lr=1e-3",
                "trainer.epochs=1",
                "trainer.batch_size=32",
                f"trainer.seed={seed}",
                f"trainer.num_threads={threads}",
                "trainer.progress_bar=false",
                f"hydra.run.dir={run_dir}",
            ],
            capture_output=True,
            text=True,
        )
        process_s = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"cifar_exp.run failed:\n{proc.stderr[-3000:]}")
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {
        "images_per_s": metrics["epochs"][0]["images_per_s"],
        "test_acc": metrics["final"]["test_acc"],
        # Everything before and after fit(): imports, Hydra, the cached load, building.
        "startup_s": process_s - metrics["final"]["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both (<= cores)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    root = args.root.expanduser().absolute()
    if not (root / "train").is_dir():
        sys.exit(f"no image folder at {root}; pass --root <folder with train/ and test/>")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as cache:
        cache_dir = Path(cache)
        options = {"name": "imagefolder", "root": str(root), "cache_dir": str(cache_dir)}
        start = time.perf_counter()
        bundle = load_dataset(options)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        load_dataset(options)
        cached_s = time.perf_counter() - start
        n = len(bundle.train) + len(bundle.test)
        print(f"one-time decode of {n} images: {decode_s:.1f}s ({n / decode_s:.0f} images/s)")
        print(f"cached load: {cached_s:.2f}s")

        seed_runs, project_runs, ceilings, batches_only = [], [], [], []
        for round_ in range(args.rounds):
            ceilings.append(model_steps_only(300))
            seed_only, project_only = loading_only(root, bundle, batches=300)
            batches_only.append((seed_only, project_only))
            print(
                f"round {round_ + 1}: batches alone (no model): seed-style {seed_only:.0f} "
                f"images/s | cifar-exp {project_only:.0f} images/s "
                f"({project_only / seed_only:.0f}x); model steps alone {ceilings[-1]:.0f} images/s",
                flush=True,
            )
            seed_runs.append(seed_style_epoch(root, round_))
            project_runs.append(project_epoch(root, round_, args.threads, cache_dir))
            print(
                f"round {round_ + 1}: seed-style {seed_runs[-1]['images_per_s']:.0f} images/s "
                f"(test acc {seed_runs[-1]['test_acc']:.4f}) | cifar-exp "
                f"{project_runs[-1]['images_per_s']:.0f} images/s "
                f"(test acc {project_runs[-1]['test_acc']:.4f}, "
                f"start-up {project_runs[-1]['startup_s']:.1f}s)",
                flush=True,
            )

    def median(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    seed_speed, project_speed = (
        median(seed_runs, "images_per_s"),
        median(project_runs, "images_per_s"),
    )
    print(f"median training images/s: seed-style {seed_speed:.0f}, cifar-exp {project_speed:.0f}")
    print(f"ratio (cifar-exp / seed-style): {project_speed / seed_speed:.2f}x")
    ceiling = statistics.median(ceilings)
    print(
        f"median LeNet5 steps alone (no data loading): {ceiling:.0f} images/s, so no data path "
        f"can exceed {ceiling / seed_speed:.2f}x the seed-style epoch at batch 32 here"
    )
    print(
        f"median test accuracy after 1 epoch: seed-style {median(seed_runs, 'test_acc'):.4f}, "
        f"cifar-exp {median(project_runs, 'test_acc'):.4f}"
    )
    print(
        f"median cifar-exp process start-up (cached data): {median(project_runs, 'startup_s'):.1f}s"
    )
    if args.json:
        result = provenance(args.threads) | {
            "rounds": args.rounds,
            "decode": {"images": n, "seconds": decode_s, "images_per_s": n / decode_s},
            "cached_load_s": cached_s,
            "epoch_images_per_s": {"seed_style": seed_speed, "cifar_exp": project_speed},
            "test_acc": {
                "seed_style": median(seed_runs, "test_acc"),
                "cifar_exp": median(project_runs, "test_acc"),
                "range": spread([r["test_acc"] for r in seed_runs + project_runs]),
            },
            "batches_only_images_per_s": {
                "seed_style": spread([seed for seed, _ in batches_only]),
                "cifar_exp": spread([project for _, project in batches_only]),
                "ratio": spread([project / seed for seed, project in batches_only]),
            },
            "model_steps_only_images_per_s": ceiling,
            "startup_s": median(project_runs, "startup_s"),
        }
        args.json.write_text(json.dumps(result, indent=2))


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values)}


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's epochs of both pipelines, their batches alone and the model's steps alone."""
    speed, acc = result["epoch_images_per_s"], result["test_acc"]
    alone, steps = result["batches_only_images_per_s"], result["model_steps_only_images_per_s"]
    ratio = speed["cifar_exp"] / speed["seed_style"]
    ceiling = steps / speed["seed_style"]
    rows = [
        [
            "training images/s (data loading included)",
            page.number(speed["seed_style"]),
            page.number(speed["cifar_exp"]),
            f"**{ratio:.2f}x**",
        ],
        [
            "test accuracy after the epoch",
            page.percent(acc["seed_style"]),
            page.percent(acc["cifar_exp"]),
            f"runs spread {page.percent(acc['range'])}",
        ],
        [
            "batches alone, no model (images/s)",
            page.figure(alone["seed_style"]),
            page.figure(alone["cifar_exp"]),
            page.figure(alone["ratio"], unit="x"),
        ],
        [
            "LeNet5 + Adam steps alone, one fixed batch, no data (images/s)",
            page.number(steps),
            "",
            f"ceiling {ceiling:.2f}x",
        ],
    ]
    head = ["one LeNet5 epoch, batch 32", "seed-style", "cifar-exp", "ratio"]
    decode = result["decode"]
    return (
        f"Medians of {page.count(result['rounds'], 'round')}.\n\n"
        f"{page.table(head, 'lrrr', rows)}\n\n"
        f"cifar-exp's epoch runs at {speed['cifar_exp'] / steps:.0%} of the ceiling that the "
        f"model's step alone sets. One-time costs: decoding the {page.number(decode['images'])} "
        f"images took {decode['seconds']:.1f} s ({page.number(decode['images_per_s'])} images/s); "
        f"a later start loads the cache in {result['cached_load_s']:.2f} s; a whole run spends "
        f"{page.figure(result['startup_s'], 1, ' s')} outside its training loop."
    )


SECTION = page.Section(
    heading="Data loading",
    about=(
        "`scripts/bench/data.py` trains one LeNet5 epoch (batch 32, Adam 1e-3) on the JPEG "
        "CIFAR-10 folder with the seed post's pipeline (torchvision `ImageFolder` + per-image "
        "`ToTensor` + `DataLoader(batch_size=32, shuffle=True)`) and with `python -m "
        "cifar_exp.run`, alternating the two; it also times each pipeline's batches without a "
        "model, and the model's steps on one fixed batch without any data loading, which no "
        "data path can beat."
    ),
    body=page_body,
)

if __name__ == "__main__":
    main()
