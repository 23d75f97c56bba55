"""Time to accuracy: the seed post's own loop against cifar-exp presets, on the same data.

    python scripts/bench/time_to_accuracy.py --root <CIFAR-10 image folder>
    python scripts/bench/time_to_accuracy.py --experiments seed_lenet5 \\
        --override trainer.epochs=3 --json tta.json

In one run, one after the other on the same image folder (CIFAR-10 layout):
- the post's loop as the post wrote it (data.py: ImageFolder + ToTensor, DataLoader
  batch 32 shuffled, Adam 1e-3, cross-entropy, the test set scored after every epoch), with
  its LeNet5 for --post-epochs epochs and its ResNet for --post-resnet-epochs;
- `python -m cifar_exp.run experiment=<name> dataset=imagefolder ...` for each preset named,
  scoring the test set after every epoch; its per-epoch figures are read back from the run's
  TensorBoard event files.
The table gives the training seconds until the test accuracy first reaches 60/85/90/93/94%
(— when it never does; --thresholds picks others), the final accuracy, the epochs, and the
speed-up over the post's loop: its fastest time to the same threshold (in practice its LeNet5
for 60%, its ResNet above, where it reaches them).

With `--contenders airbench94`, airbench94's own training code (PyPI `airbench`, see
airbench_contender.py) races too, on the very tensors the cifar-exp runs load (decoded once,
through cifar-exp's cache), widths from `--widths` for both; each of its runs starts a fresh
process, as each cifar-exp run does, so neither finds the kernels an earlier run picked.
`--seeds N` runs every contender
N times (seeds --seed .. --seed+N-1), alternating contenders and flipping their order every
seed so that a machine's drift falls on both; a second table gives the mean +- std of each
contender's final (TTA) accuracy and training clock, and its clock over airbench94's.

    python scripts/bench/time_to_accuracy.py --experiments speedrun94 --contenders airbench94 \
        --widths 32 128 128 --seeds 3 --post-epochs 0 --post-resnet-epochs 0

What the clock counts, for all: training, not the per-epoch evaluation that finds the
epoch a threshold is reached, nor decoding the folder or the process start-up. The post's
loop: its training loop (batch loading included). cifar-exp: the run's `train/train_s` plus
`train/init_s` (an initialization from the data, like airbench's whitening, which airbench
counts) less `train/compile_s` (airbench leaves the compile warm-up out). airbench94: its own
clock of the whitening and the training loop, its final TTA evaluation left out.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import airbench_contender
import page
import torch
from benchlib import cpu_flags, cpu_model
from data import DEFAULT_ROOT, seed_loaders, seed_test_accuracy, seed_train_epoch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cifar_exp
from cifar_exp.datasets import load_dataset
from cifar_exp.errors import UserError
from cifar_exp.models import MODELS
from cifar_exp.records.atomic import write_json
from cifar_exp.tracking import EPOCH_TAGS

log = logging.getLogger("bench")
EXPERIMENTS = Path(cifar_exp.__file__).parent / "conf" / "experiment"
POST_CLOCK = "training loop only (its per-epoch evaluation left out)"
PROJECT_CLOCK = "train/train_s + train/init_s - train/compile_s (no per-epoch evaluation)"
# Every cifar-exp run scores the test split after every epoch and draws no figures; the test
# split, not a held-out one, as the post scores.
PROJECT_ARGS = [
    "dataset=imagefolder",
    "dataset.val_size=0",
    "trainer.eval_every=1",
    "trainer.log_images=false",
    "trainer.progress_bar=false",
]
# What the bench itself sets and reads back, so no --override may change it.
FIXED_KEYS = (
    "experiment",
    "dataset",
    "dataset.root",
    "dataset.val_size",
    "trainer.eval_every",
    "trainer.seed",
    "hydra.run.dir",
)
CONTENDERS = ("airbench94",)
AIRBENCH_CLOCK = "its own: whitening + training loop (per-epoch and final TTA evaluation out)"


@dataclass
class Contender:
    """One row of the table: the clock's seconds and the test accuracy, epoch by epoch."""

    name: str
    clock: str
    epoch_s: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    contender: str = ""  # what the race table groups by (the row's name without its seed)
    seed: int = 0

    def time_to(self, threshold: float) -> float | None:
        """Seconds counted up to the first epoch whose test accuracy reaches `threshold`."""
        for epoch, acc in enumerate(self.test_acc, 1):
            if acc >= threshold:
                return sum(self.epoch_s[:epoch])
        return None


def post_loop(model_name: str, root: Path, epochs: int, seed: int) -> Contender:
    """The seed post's loop with its `model_name` (lenet5 or resnet) for `epochs` epochs."""
    torch.manual_seed(seed)
    train, test = seed_loaders(root)
    model = MODELS.build({"name": model_name})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    row = Contender(f"post's loop, {model_name}", POST_CLOCK)
    for epoch in range(1, epochs + 1):
        _, train_s = seed_train_epoch(model, optimizer, train)
        row.epoch_s.append(train_s)
        row.test_acc.append(seed_test_accuracy(model, test))
        log.info("%s epoch %d: %.1fs, test acc %.4f", row.name, epoch, train_s, row.test_acc[-1])
    return row


def project_run(name: str, root: Path, run_dir: Path, extra: list[str]) -> Contender:
    """`python -m cifar_exp.run experiment=<name>` in a fresh process; UserError if it fails."""
    command = [
        sys.executable,
        "-m",
        "cifar_exp.run",
        f"experiment={name}",
        *PROJECT_ARGS,
        f"dataset.root={root}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    log.info("running %s", shlex.join(command[1:]))
    # The run's log goes on to stderr as it comes (a run takes minutes); its last line is
    # the run's error message (or a traceback's last line) when it fails.
    last = "(no output)"
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            sys.stderr.write(line)
            last = line.strip() or last
    if proc.returncode != 0:
        error = last.rpartition("] - ")[2]
        raise UserError(f"experiment {name} failed (exit {proc.returncode}): {error}")
    return read_run(name, run_dir)


def read_run(name: str, run_dir: Path) -> Contender:
    """The run's per-epoch training seconds and test accuracy, from its event files."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])

    def series(tag: str) -> dict[int, float]:
        return {e.step: e.value for e in events.Scalars(tag)} if tag in tags else {}

    train_s, init_s, compile_s, test_acc = (
        series(EPOCH_TAGS[key]) for key in ("train_s", "init_s", "compile_s", "test_acc")
    )
    row = Contender(f"cifar-exp {name}", PROJECT_CLOCK, contender=name)
    for epoch in sorted(train_s):
        seconds = train_s[epoch] + init_s.get(epoch, 0.0) - compile_s.get(epoch, 0.0)
        row.epoch_s.append(seconds)
        row.test_acc.append(test_acc[epoch])
    return row


def airbench_run(
    data_dir: Path, seed: int, args: argparse.Namespace, device: torch.device, name: str
) -> Contender:
    """airbench94's train94 on the tensors in `data_dir`, with --widths and --epochs (when
    given; else its own)."""
    widths = tuple(args.widths) if args.widths else (64, 256, 256)
    epochs = args.epochs or airbench_contender.EPOCHS
    run = airbench_contender.train_in_process(data_dir, device, seed, widths, epochs, args.threads)
    row = Contender(name, AIRBENCH_CLOCK, run.epoch_s, run.test_acc, "airbench94", seed)
    log.info("%s: %.1fs, TTA acc %.4f", name, run.train_s, run.tta_acc)
    return row


def airbench_data(root: Path, work: Path, cache: list[str]) -> Path:
    """The folder's tensors as cifar-exp decodes (and caches) them, written for airbench."""
    node = {"name": "imagefolder", "root": str(root), "val_size": 0}
    for item in cache:  # dataset.cache_dir=... when the bench uses its own cache
        node[item.split("=")[0].split(".")[-1]] = item.split("=", 1)[1]
    data = load_dataset(node)
    train, test = (data.train.images, data.train.labels), (data.test.images, data.test.labels)
    log.info("airbench94 trains on the same %d / %d tensors", len(train[0]), len(test[0]))
    return airbench_contender.write_tensors(work / "airbench", train, test, list(data.classes))


def race(rows: list[Contender]) -> list[dict]:
    """Per contender: its runs' final accuracy and clock, mean and std, and its clock and
    accuracy against airbench94's."""
    groups: dict[str, list[Contender]] = {}
    for row in rows:
        groups.setdefault(row.contender or row.name, []).append(row)

    def spread(values: list[float]) -> dict[str, float]:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": statistics.fmean(values), "std": std, "values": values}

    out = []
    for name, runs in groups.items():
        finished = [r for r in runs if r.test_acc]
        out.append(
            {
                "contender": name,
                "runs": len(finished),
                "seeds": [r.seed for r in finished],
                "final_acc": spread([r.test_acc[-1] for r in finished]),
                "clock_s": spread([sum(r.epoch_s) for r in finished]),
            }
        )
    reference = next((g for g in out if g["contender"] == "airbench94"), None)
    for group in out:
        if reference is not None and reference["runs"] and group["runs"]:
            group["clock_ratio"] = group["clock_s"]["mean"] / reference["clock_s"]["mean"]
            group["acc_diff"] = group["final_acc"]["mean"] - reference["final_acc"]["mean"]
    return out


def race_table(groups: list[dict]) -> str:
    lines = [
        "| contender | runs | final accuracy (TTA) | training clock | clock / airbench94's "
        "| accuracy - airbench94's |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        acc, clock = g["final_acc"], g["clock_s"]
        ratio = f"{g['clock_ratio']:.2f}x" if "clock_ratio" in g else "—"
        diff = f"{100 * g['acc_diff']:+.2f} points" if "acc_diff" in g else "—"
        lines.append(
            f"| {g['contender']} | {g['runs']} | {100 * acc['mean']:.2f}% ± "
            f"{100 * acc['std']:.2f} | {clock['mean']:.1f} s ± {clock['std']:.1f} | {ratio} "
            f"| {diff} |"
        )
    return "\n".join(lines)


def subset_folder(root: Path, into: Path, limits: dict[str, int | None]) -> Path:
    """A folder of links to the first files (sorted) of each class of `root`, up to
    limits[split] // classes per class (every file where the limit is None)."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    for split, limit in limits.items():
        per_class = None if limit is None else limit // len(classes)
        if per_class == 0:
            raise UserError(
                f"--limit-{split} {limit} is fewer than one image per class ({len(classes)} "
                f"classes); give at least {len(classes)}"
            )
        for name in classes:
            folder = into / split / name
            folder.mkdir(parents=True)
            files = sorted(f for f in os.listdir(root / split / name) if not f.startswith("."))
            for file in files[:per_class]:
                (folder / file).symlink_to(root / split / name / file)
    return into


def baselines(posts: list[Contender], thresholds: list[float]) -> dict[str, float | None]:
    """Each threshold's baseline: the post's fastest loop to it (None if none reaches it)."""
    found = {}
    for threshold in thresholds:
        times = [t for t in (row.time_to(threshold) for row in posts) if t is not None]
        found[f"{threshold:g}"] = min(times, default=None)
    return found


def summarize(row: Contender, baseline: dict[str, float | None], post: bool) -> dict:
    """The row's JSON: its epochs, time to each threshold and speed-up over the baseline."""
    times = {key: row.time_to(float(key)) for key in baseline}
    return {
        **asdict(row),
        "epochs": len(row.test_acc),
        "final_acc": row.test_acc[-1] if row.test_acc else None,
        "time_to_s": times,
        "speedup": {
            key: None if post or s is None or not baseline[key] else baseline[key] / s
            for key, s in times.items()
        },
    }


def table(rows: list[dict], thresholds: list[float]) -> str:
    heads = " | ".join(f"{t * 100:g}%" for t in thresholds)
    lines = [
        f"| contender | {heads} | final acc | epochs |",
        "|---|" + "---:|" * (len(thresholds) + 2),
    ]
    for r in rows:
        cells = []
        for key, seconds in r["time_to_s"].items():
            ratio = r["speedup"][key]
            cell = "—" if seconds is None else f"{seconds:.1f} s"
            cells.append(cell if ratio is None else f"{cell} ({ratio:.2f}x)")
        final = "—" if r["final_acc"] is None else f"{r['final_acc']:.4f}"
        lines.append(f"| {r['name']} | {' | '.join(cells)} | {final} | {r['epochs']} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT))
    parser.add_argument(
        "--experiments", nargs="*", default=["seed_lenet5", "speedrun_cpu", "speedrun94"]
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every cifar-exp run (repeatable), e.g. trainer.epochs=3",
    )
    parser.add_argument(
        "--contenders",
        nargs="*",
        default=[],
        choices=CONTENDERS,
        help="other codes raced on the same tensors: airbench94 (needs `pip install airbench`)",
    )
    parser.add_argument(
        "--widths",
        type=int,
        nargs=3,
        help="the airbench network's widths, for airbench94 and every preset (model.widths)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="runs of each contender")
    parser.add_argument(
        "--epochs",
        type=float,
        help="train every contender this many epochs (fractions allowed: the presets get "
        "trainer.epochs + trainer.last_epoch_fraction); default: their own (airbench94: 9.9)",
    )
    parser.add_argument("--post-epochs", type=int, default=10, help="the post's LeNet5 (0: skip)")
    parser.add_argument("--post-resnet-epochs", type=int, default=3, help="its ResNet (0: skip)")
    parser.add_argument(
        "--limit-train", type=int, help="train on N images (the first N/10 of each class)"
    )
    parser.add_argument(
        "--limit-test", type=int, help="test on M images (the first M/10 of each class)"
    )
    parser.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.60, 0.85, 0.90, 0.93, 0.94],
        help="test accuracies to time (fractions)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (<= cores)")
    parser.add_argument(
        "--seed", type=int, default=0, help="the first seed (trainer.seed; the post's loop's)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for item in args.override:
        if "=" not in item:
            parser.error(f"--override {item!r} is not KEY=VALUE (e.g. trainer.epochs=3)")
        if item.split("=")[0].lstrip("+~") in FIXED_KEYS:
            fixed = ", ".join(FIXED_KEYS)
            parser.error(f"--override {item!r}: the bench sets {fixed} itself")
    if args.contenders and not airbench_contender.available():
        parser.error("--contenders airbench94 needs the airbench package: pip install airbench")
    names = ("post_epochs", "post_resnet_epochs", "limit_train", "limit_test", "threads", "seeds")
    for name in names:
        value = getattr(args, name)
        least = 0 if "epochs" in name else 1
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be >= {least}, not {value}")
    if args.epochs is not None and args.epochs <= 0:
        parser.error(f"--epochs must be > 0, not {args.epochs}")
    if not all(0 < t <= 1 for t in args.thresholds):
        parser.error(f"--thresholds are fractions in (0, 1], e.g. 0.9, not {args.thresholds}")
    check_paths(parser, args)
    return args


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--json's folder exists and --root (made absolute) is an image folder, or exit 2."""
    if args.json and not args.json.absolute().parent.is_dir():
        parser.error(f"--json {args.json}: folder {args.json.absolute().parent} does not exist")
    args.root = args.root.expanduser().absolute()
    if not (args.root / "train").is_dir() or not (args.root / "test").is_dir():
        parser.error(f"no image folder at {args.root}: pass --root <folder with train/ and test/>")


def known_experiments(names: list[str]) -> list[str]:
    """`names` that are presets; one line for each that is not."""
    known = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
    for name in names:
        if name not in known:
            log.warning("unknown experiment %s (presets: %s): skipped", name, ", ".join(known))
    return [name for name in names if name in known]


def run_all(
    args: argparse.Namespace, work: Path, save: Callable[[dict], None] | None = None
) -> dict[str, Any]:
    """Every contender, one after the other (`--seeds` times, alternating): the table's
    rows, the baseline time to each threshold, the race table, the runs that failed.
    `save` gets the results so far after every run."""
    experiments = known_experiments(args.experiments)  # before the minutes of the post's loop
    root = args.root
    cache: list[str] = []
    extra = [f"trainer.num_threads={args.threads}", *args.override]
    if args.widths:
        extra.append(f"model.widths=[{','.join(map(str, args.widths))}]")
    if args.epochs:
        whole = math.ceil(args.epochs)
        extra += [
            f"trainer.epochs={whole}",
            f"trainer.last_epoch_fraction={args.epochs - whole + 1:g}",
        ]
    if args.limit_train or args.limit_test:
        limits = {"train": args.limit_train, "test": args.limit_test}
        root = subset_folder(args.root, work / "data", limits)
        cache = [f"dataset.cache_dir={work / 'cache'}"]  # no subset in the user's cache
    extra = cache + extra
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data_dir = airbench_data(root, work, cache) if args.contenders else None
    if data_dir is not None:
        log.info("%s", airbench_contender.package_for(device)[2])
    budgets = {"lenet5": args.post_epochs, "resnet": args.post_resnet_epochs}
    posts = [post_loop(m, root, n, args.seed) for m, n in budgets.items() if n > 0]
    baseline = baselines(posts, args.thresholds)
    rows = [summarize(row, baseline, post=True) for row in posts]
    raced: list[Contender] = []
    failed: list[str] = []
    results = {"rows": rows, "baseline_s": baseline, "race": [], "failed": failed}
    if data_dir is not None:
        results["airbench94"] = airbench_contender.package_for(device)[2]
    for i, seed in enumerate(range(args.seed, args.seed + args.seeds)):
        order = [*experiments, *args.contenders]
        for name in order if i % 2 == 0 else order[::-1]:
            shown = name if args.seeds == 1 else f"{name}, seed {seed}"
            try:
                if name in CONTENDERS:
                    row = airbench_run(data_dir, seed, args, device, shown)
                else:
                    run_dir = work / "runs" / f"{name}-{seed}"
                    row = project_run(name, root, run_dir, [*extra, f"trainer.seed={seed}"])
                    row.name, row.seed = f"cifar-exp {shown}", seed
            except (UserError, RuntimeError) as err:
                log.error("%s", err)
                failed.append(str(err) if args.seeds == 1 else f"seed {seed}: {err}")
                continue
            raced.append(row)
            rows.append(summarize(row, baseline, post=False))
            results["race"] = race(raced)
            if save is not None:
                save(results)
    return results


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its reader's chatter
    torch.set_num_threads(args.threads)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    start = time.perf_counter()
    flags = sorted(cpu_flags())

    def record(results: dict[str, Any]) -> dict[str, Any]:
        return {
            "command": command,
            "date": date,
            "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "flags": flags},
            "threads": args.threads,
            "torch": torch.__version__,
            "bench_s": time.perf_counter() - start,
            **results,
        }

    def save(results: dict[str, Any]) -> None:  # after every run: a long race keeps its runs
        if args.json:
            write_json(args.json, {**record(results), "partial": True})

    try:
        with tempfile.TemporaryDirectory() as work:
            results = run_all(args, Path(work), save)
    except UserError as err:
        sys.exit(str(err))
    shown = [f for f in flags if f.startswith(("avx", "amx")) or "bf16" in f]
    print(f"\n{command}\n{date}; {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads")
    print(f"CPU flags: {' '.join(shown) or 'none'}; torch {torch.__version__}")
    print(f"post's loop clock: {POST_CLOCK}\ncifar-exp clock: {PROJECT_CLOCK}\n")
    if "airbench94" in results:
        print(f"airbench94: {results['airbench94']}; clock: {AIRBENCH_CLOCK}")
        print("(its per-epoch accuracies are without TTA, as it logs them; its last with TTA)\n")
    print(table(results["rows"], args.thresholds))
    print("(x): the post's fastest loop's time to that accuracy / this row's")
    if results["race"]:
        print(f"\nmean ± std over the seeds, alternating runs\n{race_table(results['race'])}")
    result = record(results)
    if args.json:
        try:
            write_json(args.json, result)
        except UserError as err:
            sys.exit(str(err))
    if results["failed"]:
        sys.exit(f"{len(results['failed'])} run(s) failed: see above")


# Its section of docs/benchmarks.md, which scripts/docs/render_benchmarks.py puts together.


def page_body(result: dict) -> str:
    """A result's times to each accuracy level, then its race where it raced."""
    keys = list(result["baseline_s"])
    fastest = {
        key: min((r["time_to_s"][key] for r in result["rows"] if r["time_to_s"][key]), default=None)
        for key in keys
    }
    rows = []
    for r in result["rows"]:
        cells = [r["name"]]
        for key in keys:
            seconds, ratio = r["time_to_s"][key], r["speedup"][key]
            cell = "—" if seconds is None else f"{seconds:.1f} s"
            if ratio is not None:
                cell += f" ({ratio:.2f}x)"
            cells.append(f"**{cell}**" if seconds is not None and seconds == fastest[key] else cell)
        cells += [page.percent(r["final_acc"]), str(r["epochs"])]
        rows.append(cells)
    head = ["contender", *(f"{float(k) * 100:g}%" for k in keys), "final acc", "epochs"]
    legend = (
        "Seconds of training until the test accuracy first reached each level (— : never); "
        "bold: the fastest to it; (x): the post's fastest loop to that level divided by the "
        "row's time."
    )
    failed = "".join(f"\n\nFailed: {f}" for f in result.get("failed", []))
    text = f"{page.table(head, 'l' + 'r' * (len(keys) + 2), rows)}\n\n{legend}{failed}"
    if result.get("race"):
        text += "\n\n" + page_race(result)
    return text


def page_race(result: dict) -> str:
    """The race table: each contender's runs, mean ± std of its final accuracy and clock
    (gpu_check.py's section shows its race with it too)."""
    raced = "airbench94" in result  # its columns and its note, only where it raced
    rows = []
    for g in result["race"]:
        acc, clock = g["final_acc"], g["clock_s"]
        row = [
            g["contender"],
            str(g["runs"]),
            f"{100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f}",
            f"{clock['mean']:.1f} s ± {clock['std']:.1f}",
        ]
        if raced:
            row.append(f"{g['clock_ratio']:.2f}x" if "clock_ratio" in g else "—")
            row.append(f"{100 * g['acc_diff']:+.2f}" if "acc_diff" in g else "—")
        rows.append(row)
    head = ["contender", "runs", "final acc (TTA)", "clock"]
    legend = "Mean ± std over the seeds"
    if raced:
        head += ["clock / airbench94's", "acc − airbench94's (points)"]
        legend += f", contenders alternating. airbench94: {result['airbench94']}"
    partial = " Not every planned run finished (see the notes)." if result.get("partial") else ""
    return f"{page.table(head, 'l' + 'r' * (len(head) - 1), rows)}\n\n{legend}.{partial}"


SECTION = page.Section(
    heading="Time to accuracy",
    about=(
        "`scripts/bench/time_to_accuracy.py` trains, one after the other on the same image "
        "folder, the seed post's own loop (its LeNet5 and its ResNet as the post wrote them: "
        "ImageFolder + ToTensor, batch 32 shuffled, Adam 1e-3, cross-entropy) and cifar-exp "
        "presets, and scores the test set after every epoch. The clock counts training only: "
        "not the per-epoch evaluation that finds when a level is reached, nor decoding the "
        "folder or starting the process. For the post's loop, its training loop with its batch "
        "loading; for a cifar-exp run (`python -m cifar_exp.run experiment=<name> "
        "dataset=imagefolder dataset.val_size=0 trainer.eval_every=1 "
        "trainer.log_images=false`), `train/train_s` plus `train/init_s` (an initialization "
        "from the data, such as airbench's whitening, which airbench counts too) less "
        "`train/compile_s` (the compile warm-up, which airbench leaves out), read back from the "
        "run's TensorBoard events.\n\n"
        "```bash\n"
        "python scripts/bench/time_to_accuracy.py --root <CIFAR-10 image folder> --json tta.json\n"
        "# a quick subset: one preset, shorter budgets, fewer images\n"
        "python scripts/bench/time_to_accuracy.py --root <folder> --experiments seed_lenet5 \\\n"
        "    --override trainer.epochs=3 --post-epochs 3 --post-resnet-epochs 1 \\\n"
        "    --limit-train 5000 --limit-test 1000\n"
        "```"
    ),
    body=page_body,
)


if __name__ == "__main__":
    main()
