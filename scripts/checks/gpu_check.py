"""The GPU check, one command: every CUDA path of cifar-exp, scripts/bench/gpu.py's throughput
table and the airbench race, in about 8 minutes on one GPU; one JSON and one markdown table.

    python scripts/checks/gpu_check.py --out gpu_check        # on a machine with a CUDA GPU
    python scripts/checks/gpu_check.py --dry-run --out check  # on a CPU, under a minute: the script

1. The CUDA paths, each a real `python -m cifar_exp.run` on synthetic data (resnet20, one
   short epoch) with one option: NCCL under torchrun with 1 process, fp16 with its GradScaler,
   bf16, channels_last, compile, dataset.on_device=true. Each passes when the run exits 0 and
   its manifest names the GPU (and the precision asked).
2. `scripts/bench/gpu.py`: training throughput per model and speed option.
3. The airbench race (`scripts/bench/time_to_accuracy.py --experiments speedrun94
   speedrun94_muon --contenders airbench94 --seeds 5`): cifar-exp's speedrun94 and
   speedrun94_muon against airbench94's own code on the same tensors, alternating runs; the
   time to 94% is among its thresholds.
`--dry-run` runs the same three steps on the CPU with tiny sizes: the paths a CPU has (gloo
for torchrun; bf16, channels_last and on_device in one run; fp16 and compile are skipped),
scripts/bench/gpu.py --dry-run, and a race of one seed each on 1,000 images for 1 epoch
(batches of 512).
Writes <out>/gpu_check.json and <out>/gpu_check.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# The benchmarks it runs are in scripts/bench, and so are the helpers it shares with them,
# which import each other by bare name (as they do when run from there).
BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import page  # noqa: E402
from benchlib import provenance  # noqa: E402
from data import DEFAULT_ROOT  # noqa: E402
from time_to_accuracy import page_race, race_table  # noqa: E402

log = logging.getLogger("gpu_check")
RACED = ["speedrun94", "speedrun94_muon"]  # the presets raced against airbench94's own code
# A run small enough to check a path: resnet20, 2,048 synthetic images, one epoch.
RUN = [
    "model=resnet20",
    "dataset=synthetic",
    "dataset.train_size=2048",
    "dataset.test_size=512",
    "trainer.epochs=1",
    "trainer.batch_size=256",
    "trainer.log_images=false",
    "trainer.progress_bar=false",
]
# name -> (overrides, under torchrun, the precision its manifest must record)
PATHS: dict[str, tuple[list[str], bool, str | None]] = {
    "nccl, 1 process (torchrun)": ([], True, None),
    "fp16 + GradScaler": (["trainer.precision=fp16"], False, "fp16"),
    "bf16": (["trainer.precision=bf16"], False, "bf16"),
    "channels_last": (["trainer.channels_last=true"], False, None),
    "compile": (["trainer.compile=true"], False, None),
    "dataset.on_device=true": (["dataset.on_device=true"], False, None),
}
# --dry-run: the smallest run that passes through the same code (lenet5, 256 images).
DRY_RUN = [
    "model=lenet5",
    "dataset=synthetic",
    "dataset.train_size=256",
    "dataset.test_size=128",
    "trainer.epochs=1",
    "trainer.batch_size=64",
    "trainer.num_threads=1",
    "trainer.log_images=false",
    "trainer.progress_bar=false",
]
DRY_PATHS: dict[str, tuple[list[str], bool, str | None]] = {
    "gloo, 1 process (torchrun)": ([], True, None),
    "bf16 + channels_last + on_device": (
        ["trainer.precision=bf16", "trainer.channels_last=true", "dataset.on_device=true"],
        False,
        "bf16",
    ),
}
DRY_SKIPPED = ["fp16 + GradScaler (needs CUDA)", "compile (minutes on a CPU)"]


def run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> dict:
    """`command` in a subprocess: exit code, seconds, its output's tail."""
    log.info("running %s", shlex.join(command))
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env or os.environ
        )
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        parts = [p.decode() if isinstance(p, bytes) else p for p in (err.stdout, err.stderr)]
        code, out = f"timeout after {timeout:.0f}s", "".join(p or "" for p in parts)
    return {"exit": code, "seconds": round(time.perf_counter() - start, 1), "output": out}


def check_path(
    name: str, spec: tuple[list[str], bool, str | None], work: Path, device: str, timeout: float
) -> dict[str, Any]:
    """One CUDA path: a real run; passes when it exits 0 on the device (and precision) asked."""
    overrides, torchrun, precision = spec
    run_dir = work / "paths" / name.split(",")[0].split(" ")[0].replace(".", "_")
    sizes = RUN if device == "cuda" else DRY_RUN
    args = [*sizes, f"device={device}", *overrides, f"hydra.run.dir={run_dir}"]
    launcher = [sys.executable, "-m"]
    if torchrun:
        launcher += ["torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]
    result = run(
        [*launcher, "cifar_exp.run", *args], timeout, {**os.environ, "OMP_NUM_THREADS": "2"}
    )
    problems = []
    if result["exit"] != 0:
        problems.append(f"exit {result['exit']}: {last_line(result['output'])}")
    else:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        if device not in str(manifest.get("device", "")).lower():
            problems.append(f"ran on {manifest.get('device')}, not {device}")
        if precision and manifest.get("precision") != precision:
            problems.append(f"precision {manifest.get('precision')}, not {precision}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        result["test_acc"] = metrics["final"]["test_acc"]
    return {
        "path": name,
        "overrides": overrides,
        "torchrun": torchrun,
        "ok": not problems,
        "problem": "; ".join(problems),
        "seconds": result["seconds"],
        "test_acc": result.get("test_acc"),
        "output_tail": result["output"][-2000:],
    }


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][-300:].replace("|", "/") if lines else "(no output)"


def markdown_table(text: str) -> str:
    """The markdown table lines of a script's output."""
    return "\n".join(ln for ln in text.splitlines() if ln.startswith("|"))


def device_facts(cuda: bool) -> dict[str, str]:
    facts = {"torch": torch.__version__}
    if cuda:
        facts["device"] = torch.cuda.get_device_name(0)
        facts["cuda"] = str(torch.version.cuda)
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        try:
            facts["driver"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
        except OSError:
            facts["driver"] = "unknown (no nvidia-smi)"
    else:
        facts["device"] = "CPU (dry run: no figure of it is a GPU figure)"
    return facts


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    facts = result["facts"]
    lines = [
        f"# GPU check{' (dry run on a CPU)' if result['dry_run'] else ''}",
        "",
        f"{result['date']}; {facts['device']}; torch {facts['torch']}"
        + (f", CUDA {facts['cuda']}, driver {facts['driver']}" if "driver" in facts else ""),
        f"command: `{result['command']}`; {result['total_s']:.0f} s in all",
        "",
        "## CUDA paths",
        "",
        "| path | overrides | result | seconds |",
        "|---|---|---|---:|",
    ]
    for p in result["paths"]:
        verdict = "ok" if p["ok"] else f"FAILED: {p['problem']}"
        shown = " ".join(p["overrides"]) or "(torchrun)"
        lines.append(f"| {p['path']} | `{shown}` | {verdict} | {p['seconds']:.1f} |")
    for skipped in result["skipped_paths"]:
        lines.append(f"| {skipped} | | skipped | |")
    bench = result["bench_gpu"]
    lines += ["", "## Throughput (scripts/bench/gpu.py)", "", bench["table"] or "(no table)"]
    if bench["exit"] != 0:
        lines.append(f"\nscripts/bench/gpu.py FAILED (exit {bench['exit']}): {bench['last_line']}")
    race = result["race"]
    lines += ["", "## The airbench race (scripts/bench/time_to_accuracy.py)", ""]
    lines.append(race_table(race["groups"]) if race["groups"] else "(no runs finished)")
    if race["exit"] != 0:
        lines.append(f"\nthe race FAILED (exit {race['exit']}): {race['last_line']}")
    if race.get("airbench94"):
        lines.append(f"\nairbench94: {race['airbench94']}")
    path.write_text("\n".join(lines) + "\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder of results")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(DEFAULT_ROOT),
        help="CIFAR-10 image folder for the race (default: $CIFAR10_JPEG)",
    )
    parser.add_argument("--seeds", type=int, default=5, help="race runs of each contender")
    parser.add_argument(
        "--bench-budget-s", type=float, default=120, help="scripts/bench/gpu.py's --budget-s"
    )
    parser.add_argument("--dry-run", action="store_true", help="on a CPU, tiny sizes")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA GPU here; use --dry-run to check the script on the CPU")
    if not (args.root / "train").is_dir():
        parser.error(f"no image folder at {args.root}: pass --root <folder with train/, test/>")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out.absolute() / "work"
    cuda = not args.dry_run
    device = "cuda" if cuda else "cpu"
    paths = DRY_PATHS if args.dry_run else PATHS
    timeout = 120 if cuda else 240
    checked = [check_path(n, spec, work, device, timeout) for n, spec in paths.items()]

    bench_args = ["--dry-run"] if args.dry_run else ["--budget-s", str(args.bench_budget_s)]
    bench_json = work / "bench_gpu.json"
    bench = run(
        [sys.executable, str(BENCH / "gpu.py"), *bench_args, "--json", str(bench_json)],
        300 if cuda else 900,
    )

    race_json = work / "race.json"
    race_args = ["--experiments", *RACED, "--contenders", "airbench94"]
    race_args += ["--root", str(args.root), "--post-epochs", "0", "--post-resnet-epochs", "0"]
    if args.dry_run:  # batches of 512: a step or two of every preset on 1,030 images
        race_args += ["--seeds", "1", "--widths", "8", "16", "16", "--epochs", "1"]
        race_args += ["--override", "trainer.batch_size=512"]
        race_args += ["--limit-train", "1030", "--limit-test", "200", "--threads", "1"]
    else:
        race_args += ["--seeds", str(args.seeds)]
    race = run(
        [
            sys.executable,
            str(BENCH / "time_to_accuracy.py"),
            *race_args,
            "--json",
            str(race_json),
        ],
        420 if cuda else 900,
    )
    raced = json.loads(race_json.read_text()) if race_json.exists() else {}

    facts = device_facts(cuda)
    result = provenance(torch.get_num_threads()) | {
        "device": facts["device"],
        "dry_run": args.dry_run,
        "facts": facts,
        "paths": checked,
        "skipped_paths": DRY_SKIPPED if args.dry_run else [],
        "bench_gpu": {
            "exit": bench["exit"],
            "seconds": bench["seconds"],
            "table": markdown_table(bench["output"]),
            "last_line": last_line(bench["output"]),
            "results": json.loads(bench_json.read_text()) if bench_json.exists() else None,
        },
        "race": {
            "exit": race["exit"],
            "seconds": race["seconds"],
            "groups": raced.get("race", []),
            "rows": raced.get("rows", []),
            "airbench94": raced.get("airbench94"),
            "last_line": last_line(race["output"]),
        },
        "total_s": time.perf_counter() - start,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    write_markdown(args.out / "gpu_check.md", result)
    print((args.out / "gpu_check.md").read_text())
    failed = [p["path"] for p in checked if not p["ok"]]
    failed += ["scripts/bench/gpu.py"] if bench["exit"] != 0 else []
    failed += ["the airbench race"] if race["exit"] != 0 else []
    if failed:
        sys.exit(f"gpu_check: failed: {', '.join(failed)} (see {args.out / 'gpu_check.md'})")


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's three parts: the CUDA paths, the throughput table, the race."""
    rows = [
        [p["path"], "ok" if p["ok"] else f"FAILED: {p['problem']}", f"{p['seconds']:.1f}"]
        for p in result["paths"]
    ]
    parts = [page.table(["CUDA path", "result", "seconds"], "llr", rows)]
    parts.append(result["bench_gpu"]["table"] or "(scripts/bench/gpu.py gave no table)")
    if result["race"]["groups"]:
        parts.append(page_race({"race": result["race"]["groups"], **result["race"]}))
    return "\n\n".join(parts)


def page_title(result: dict) -> str:
    return result["device"]


SECTION = page.Section(
    heading="GPU check",
    about=(
        "`scripts/checks/gpu_check.py` runs, in about 8 minutes on one GPU, every CUDA path of "
        "cifar-exp (NCCL under torchrun with 1 process, fp16 with its GradScaler, bf16, "
        "channels_last, compile, `dataset.on_device=true`; each a real run whose manifest must "
        "name the GPU), `scripts/bench/gpu.py`'s throughput table, and the airbench race "
        "(`scripts/bench/time_to_accuracy.py --experiments speedrun94 speedrun94_muon "
        "--contenders airbench94 --seeds 5`, with the time to 94%), and writes one JSON and one "
        "markdown table.\n\n"
        "```bash\n"
        "python scripts/checks/gpu_check.py --out gpu_check   "
        "# then copy gpu_check/gpu_check.json to\n"
        "                                                     "
        "# docs/benchmarks/gpu_check-<label>.json\n"
        "python scripts/checks/gpu_check.py --dry-run --out check   # on a CPU: checks the script\n"
        "```"
    ),
    body=page_body,
    title=page_title,
    missing=(
        "Not measured yet: no GPU has been lent to this project so far, so neither the CUDA "
        "paths nor the race on a GPU have run. No GPU figure is given anywhere on this page."
    ),
)

if __name__ == "__main__":
    main()
