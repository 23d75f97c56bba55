"""What a command costs before it does anything: this checkout against an earlier commit,
side by side in one run.

    python scripts/bench/startup.py --baseline bf62928 --rounds 5 --json startup.json

Each probe is a fresh interpreter, as a user's command, a sweep job or a test starts one:
`import torch, hydra` (the floor every command pays), the same and a torch optimizer built
(the floor of every training run: it imports torch._dynamo), `import cifar_exp.run`, `--help`,
`--cfg job`, a misspelled key's one-line answer (`trainer.epochz=3`), and a `debug=tiny` run
timed from the moment its process starts to its first training step (the first
`loss.backward()`; the process then ends there). The two checkouts run the same probe one
after the other, in alternating order every round, from the same interpreter and virtual
environment (only PYTHONPATH differs); the table gives each one's median and the ratios. The
earlier commit's `src/` is taken with `git archive` into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import page
from benchlib import provenance

REPO = Path(__file__).resolve().parents[2]
FIRST_STEP = "FIRST_STEP"
# Started as `python -c CHILD <args>`: the run as `python -m cifar_exp.run <args>` starts it,
# stopped at its first backward pass, which prints the wall clock first.
CHILD = f"""
import os, runpy, sys, time
import torch
def first_step(*args, **kwargs):
    print("{FIRST_STEP}", repr(time.time()), flush=True)
    os._exit(0)
torch.Tensor.backward = first_step
sys.argv = ["cifar_exp.run", *sys.argv[1:]]
runpy.run_module("cifar_exp.run", run_name="__main__", alter_sys=True)
"""
# Building any torch.optim optimizer imports torch._dynamo (its add_param_group is wrapped by
# torch._disable_dynamo): a training run's floor, beside the import's.
OPTIMIZER = "import torch, hydra; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)"
PROBES = {
    "import torch, hydra": ["-c", "import torch, hydra"],
    "import torch, hydra + an optimizer": ["-c", OPTIMIZER],
    "import cifar_exp.run": ["-c", "import cifar_exp.run"],
    "--help": ["-m", "cifar_exp.run", "--help"],
    "--cfg job": ["-m", "cifar_exp.run", "--cfg", "job"],
    "trainer.epochz=3 (its error)": ["-m", "cifar_exp.run", "trainer.epochz=3"],
    "debug=tiny to its first step": ["-c", CHILD, "debug=tiny"],
}
EXPECTED_EXIT = {"trainer.epochz=3 (its error)": 1}
FLOOR = "import torch, hydra"


def baseline_src(commit: str, into: Path) -> Path:
    """The `src/` of `commit`, unpacked into `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {commit}: {archive.stderr.decode().strip()}")
    tar = into / "src.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as members:
        members.extractall(into, filter="data")
    return into / "src"


def seconds(probe: str, src: Path, cwd: Path) -> float:
    """One fresh process of `probe` with `src` first on the path; its wall time in seconds
    (to the first training step for the run)."""
    env = {**os.environ, "PYTHONPATH": str(src), "HYDRA_FULL_ERROR": "0"}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, *PROBES[probe]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    end = time.time()
    if proc.returncode != EXPECTED_EXIT.get(probe, 0):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise SystemExit(f"{probe} with {src} exited {proc.returncode}: {' | '.join(tail)}")
    marks = [line for line in proc.stdout.splitlines() if line.startswith(FIRST_STEP)]
    if probe.startswith("debug=tiny"):
        if not marks:
            raise SystemExit(f"{probe} with {src} never reached a training step")
        end = float(marks[0].split()[1])
    return end - start


def measure(contenders: dict[str, Path], rounds: int, work: Path) -> dict[str, dict[str, list]]:
    times: dict[str, dict[str, list]] = {p: {c: [] for c in contenders} for p in PROBES}
    names = list(contenders)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for probe in PROBES:
            for name in order:
                cwd = work / f"{name}-{r}"
                cwd.mkdir(exist_ok=True)
                times[probe][name].append(seconds(probe, contenders[name], cwd))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def rows(times: dict[str, dict[str, list]], baseline: str) -> list[dict]:
    floor = statistics.median(times[FLOOR]["this checkout"])
    out = []
    for probe, by in times.items():
        now, before = statistics.median(by["this checkout"]), statistics.median(by[baseline])
        out.append(
            {
                "probe": probe,
                "baseline_s": before,
                "now_s": now,
                "now_vs_baseline": now / before,
                "now_vs_floor": now / floor,
                "seconds": by,
            }
        )
    return out


def page_body(result: dict) -> str:
    base = result["baseline"]
    body = [
        [
            f"`{r['probe']}`",
            f"{r['baseline_s']:.2f} s",
            f"{r['now_s']:.2f} s",
            f"{r['now_vs_baseline']:.2f}x",
            f"{r['now_vs_floor']:.2f}x",
        ]
        for r in result["rows"]
    ]
    head = ["probe", f"{base} (median)", "this checkout (median)", "now / then", "now / floor"]
    legend = (
        f"Medians of {page.count(result['rounds'], 'round')}, each a fresh process, the two "
        f"checkouts alternating. Floor: `{FLOOR}` in this checkout's run."
    )
    return page.table(head, "lrrrr", body) + "\n\n" + legend


SECTION = page.Section(
    heading="Start-up",
    about=(
        "`scripts/bench/startup.py` times what a command costs before it does anything, in "
        "fresh processes, this checkout against an earlier commit (its `src/` from `git "
        "archive`), alternating: `import torch, hydra` (the floor every command pays), the same "
        "and a torch optimizer built (the floor of a training run: it imports torch._dynamo), "
        "`import cifar_exp.run`, `--help`, `--cfg job`, a misspelled key's one-line answer, "
        "and a `debug=tiny` run from its process's start to its first training step.\n\n"
        "```bash\n"
        "python scripts/bench/startup.py --baseline bf62928 --rounds 5 --json startup.json\n"
        "```"
    ),
    body=page_body,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="bf62928", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, not {args.rounds}")
    return args


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        contenders = {
            args.baseline: baseline_src(args.baseline, work),
            "this checkout": REPO / "src",
        }
        times = measure(contenders, args.rounds, work)
    result = {
        **provenance(threads=0),
        "baseline": args.baseline,
        "rounds": args.rounds,
        "rows": rows(times, args.baseline),
    }
    del result["threads"]  # torch's default in every probe
    print(page_body(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
