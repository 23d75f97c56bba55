"""Peak memory of a training step with and without gradient accumulation, side by side.

    python scripts/bench/accumulate.py                       # resnet18, batch 128, k = 1 and 4
    python scripts/bench/accumulate.py --model lenet5 --accumulate 1 2 8 --batch-size 64

Each setting runs in a fresh process (peak RSS is a process's lifetime maximum): the real
Trainer from build.build_trainer (debug=tiny's synthetic data, the model and batch asked,
trainer.accumulate_grad_batches=k) takes --steps optimizer steps on one training batch. The
table gives the peak RSS after the build (weights, optimizer, data) and after the steps, the
growth the steps caused (activations and gradients), and on a GPU the CUDA peak. Keep nothing
else heavy running meanwhile: RSS counts this process alone, but a loaded machine slows it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import cpu_model, provenance, run_config


def child(model: str, batch_size: int, k: int, steps: int, device: str) -> dict:
    """One setting, in this process: build the Trainer, take the steps, read the peaks."""
    import torch

    from cifar_exp.training.build import build_trainer

    overrides = [
        "debug=tiny",
        f"model={model}",
        f"device={device}",
        f"trainer.batch_size={batch_size}",
        f"trainer.accumulate_grad_batches={k}",
        f"dataset.train_size={batch_size}",
    ]
    cfg = run_config(overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, _ = build_trainer(cfg, Path(run_dir))
        images, labels = next(iter(trainer.loaders.train))
        built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        trainer.model.train()
        for _ in range(steps):
            trainer.step(images, labels)
        cuda = None
        if images.device.type == "cuda":
            torch.cuda.synchronize()
            cuda = torch.cuda.max_memory_allocated() / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        trainer.tracker.writer.close()
    return {
        "model": model,
        "batch_size": batch_size,
        "accumulate_grad_batches": k,
        "micro_batch": batch_size // k,
        "rss_after_build_mb": round(built),
        "peak_rss_mb": round(peak),
        "step_growth_mb": round(peak - built),
        "cuda_peak_mb": None if cuda is None else round(cuda),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--accumulate", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dry-run", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one setting, k
    args = parser.parse_args()
    if args.dry_run:
        args.model, args.batch_size, args.steps = "lenet5", 8, 1
    if args.child is not None:
        print(json.dumps(child(args.model, args.batch_size, args.child, args.steps, args.device)))
        return
    rows = []
    for k in args.accumulate:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(k),
                f"--model={args.model}",
                f"--batch-size={args.batch_size}",
                f"--steps={args.steps}",
                f"--device={args.device}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            sys.exit(f"k={k} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.splitlines()[-1]))
    print(f"\n{cpu_model()}, {args.model}, batch {args.batch_size}, {args.steps} steps\n")
    print("| k | micro-batch | RSS after build | peak RSS | growth in the steps | CUDA peak |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cuda = "" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']} MB"
        print(
            f"| {r['accumulate_grad_batches']} | {r['micro_batch']} | "
            f"{r['rss_after_build_mb']} MB | {r['peak_rss_mb']} MB | {r['step_growth_mb']} MB | "
            f"{cuda} |"
        )
    if args.json:
        result = provenance(threads=1) | {"args": vars(args) | {"json": str(args.json)}}
        args.json.write_text(json.dumps(result | {"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
