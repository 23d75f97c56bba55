"""Render docs/benchmarks.md from the benchmark results in docs/benchmarks/*.json.

    python scripts/render_benchmarks.py            # rewrite docs/benchmarks.md
    python scripts/render_benchmarks.py --check    # exit 1 when it differs from the JSON

Each result is named `<kind>-<label>.json`, its kind saying which script wrote it:
`time_to_accuracy` (bench_time_to_accuracy.py), `presets` (runs of the presets), `cpu`
(bench_cpu.py), `gpu` (bench_gpu.py), `data` (bench_data.py), `dashboard`
(bench_dashboard.py), `augment` (bench_augment.py), `epoch` (bench_epoch_vs_airbench.py).
Every figure on the page comes from these files, each table with the command, the CPU model
and flags and the date its file records; the prose around the tables says what each script
measures and is the same for every result.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks"
PAGE = REPO / "docs" / "benchmarks.md"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

Figure = float | int | dict | None


def count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def figure(value: Figure, digits: int = 0, unit: str = "") -> str:
    """A number, a range {"min", "max"} or an approximate {"approx"}; "—" when absent."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        if "approx" in value:
            return f"~{value['approx']:,g}{unit}"
        return f"{number(value['min'], digits)}-{number(value['max'], digits)}{unit}"
    return f"{number(value, digits)}{unit}"


def percent(value: Figure) -> str:
    """A fraction as a percentage with at most two decimals, as precise as it was stored."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return "-".join(percent(value[key]) for key in ("min", "max"))
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def shown_flags(flags: list[str]) -> list[str]:
    """The flags that decide the speed of these benchmarks: AVX, AMX and bf16."""
    return [f for f in flags if f.startswith(("avx", "amx")) or "bf16" in f]


def provenance(result: dict) -> str:
    """Where the figures come from: command, machine and flags, date, data, source."""
    cpu = result["cpu"]
    flags = shown_flags(cpu["flags"])
    native = any(f in cpu["flags"] for f in BF16_FLAGS)
    machine = f"{cpu['model']}, {cpu['cores']} cores"
    if "threads" in result:
        machine += f", {count(result['threads'], 'thread')}"
    if "device" in result:
        machine = f"{result['device']} (host: {machine})"
    extra = [f"torch {result['torch']}"] if "torch" in result else []
    if "cpu_capability" in result:
        extra.append(f"torch's CPU capability {result['cpu_capability']}")
    lines = []
    if "command" in result:
        lines.append(f"- **Command:** `{result['command']}`")
    lines += [
        f"- **Machine:** {machine}" + (f"; {', '.join(extra)}" if extra else ""),
        f"- **CPU flags** (AVX, AMX, bf16): {' '.join(flags) or 'none'}; "
        + ("native bf16" if native else "no native bf16 (no avx512_bf16 or amx_bf16)"),
        f"- **Date:** {result['date']}"
        + (f" ({result['date_source']})" if "date_source" in result else ""),
    ]
    if result.get("dry_run") or result.get("args", {}).get("dry_run"):
        lines.append("- **Dry run:** tiny sizes that check the script; not a measurement")
    if "data" in result:
        lines.append(f"- **Data:** {result['data']}")
    if "source" in result:
        lines.append(f"- **Recorded from:** {result['source']}")
    return "\n".join(lines)


def notes(result: dict) -> str:
    return "\n".join(f"- {note}" for note in result.get("notes", []))


def table(head: list[str], align: str, rows: list[list[str]]) -> str:
    """A Markdown table; `align` has one letter per column, l or r."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    lines = ["| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def time_to_accuracy(result: dict) -> str:
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
        cells += [percent(r["final_acc"]), str(r["epochs"])]
        rows.append(cells)
    head = ["contender", *(f"{float(k) * 100:g}%" for k in keys), "final acc", "epochs"]
    legend = (
        "Seconds of training until the test accuracy first reached each level (— : never); "
        "bold: the fastest to it; (x): the post's fastest loop to that level divided by the "
        "row's time."
    )
    failed = "".join(f"\n\nFailed: {f}" for f in result.get("failed", []))
    text = f"{table(head, 'l' + 'r' * (len(keys) + 2), rows)}\n\n{legend}{failed}"
    if result.get("race"):
        text += "\n\n" + race(result)
    return text


def race(result: dict) -> str:
    """The race table: each contender's runs, mean ± std of its final accuracy and clock."""
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
    return f"{table(head, 'l' + 'r' * (len(head) - 1), rows)}\n\n{legend}.{partial}"


def presets(result: dict) -> str:
    rows = []
    for run in result["runs"]:
        best = percent(run["best_test_acc"])
        if run["best_epoch"] is not None:
            best += f" (epoch {run['best_epoch']})"
        minutes = "—" if run["train_min"] is None else f"{run['train_min']:.1f} min"
        rows.append(
            [
                f"`{run['preset']}`",
                f"`{run['command']}`",
                str(run["epochs"]),
                str(run["seed"]),
                percent(run["final_test_acc"]),
                best,
                percent(run["train_acc"]),
                minutes,
            ]
        )
    head = [
        "preset",
        "command",
        "epochs",
        "seed",
        "final test acc",
        "best test acc",
        "train acc",
        "training",
    ]
    return table(head, "llrrrrrr", rows)


def throughput(result: dict) -> str:
    """bench_cpu.py's and bench_gpu.py's rows: images/s per model and variant."""
    rows = result["rows"]
    has = {
        key: any(r.get(key) is not None for r in rows) for key in ("min", "compile_s", "peak_mb")
    }
    best = {}
    for r in rows:
        if r["model"] not in best or r["images_per_s"] > best[r["model"]]["images_per_s"]:
            best[r["model"]] = r
    head, align = ["model", "variant", "images/s", "vs fp32"], "llrr"
    for key, title in (("min", "min-max"), ("compile_s", "compile s"), ("peak_mb", "peak MiB")):
        if has[key]:
            head.append(title)
            align += "r"
    lines = []
    for r in rows:
        cells = [f"`{r['model']}`", r["variant"], number(r["images_per_s"]), f"{r['ratio']:.2f}x"]
        if best[r["model"]] is r:
            cells[1:] = [f"**{c}**" for c in cells[1:]]
        if has["min"]:
            cells.append("" if r["min"] is None else f"{number(r['min'])}-{number(r['max'])}")
        if has["compile_s"]:
            cells.append("" if r["compile_s"] is None else f"{r['compile_s']:.1f}")
        if has["peak_mb"]:
            cells.append("" if r.get("peak_mb") is None else number(r["peak_mb"]))
        lines.append(cells)
    args = result["args"]
    setting = (
        f"Batch {args['batch_size']}, medians of {count(args['rounds'], 'alternating round')} "
        f"of {count(args['steps'], 'step')} after {count(args['warmup'], 'warm-up step')}; "
        "bold: the fastest variant of each model."
    )
    fastest = "; ".join(
        f"`{model}`: {r['variant']}, {r['ratio']:.2f}x fp32" for model, r in best.items()
    )
    text = f"{setting}\n\n{table(head, align, lines)}\n\nFastest per model: {fastest}."
    for e in result.get("epochs", []):
        epochs = " / ".join(f"{s:.2f} s" for s in e["epoch_s"])
        text += (
            f"\n\n`{e['model']}`, {e['variant']}, batch {e['batch_size']}: an epoch of "
            f"{number(e['images'])} images held on the device took {epochs} (epoch 1 / 2), "
            f"{number(e['images_per_s'])} images/s in epoch 2."
        )
    if result.get("skipped"):
        text += f"\n\nSkipped (time budget): {', '.join(result['skipped'])}."
    return text


def data(result: dict) -> str:
    speed, acc = result["epoch_images_per_s"], result["test_acc"]
    alone, steps = result["batches_only_images_per_s"], result["model_steps_only_images_per_s"]
    ratio = speed["cifar_exp"] / speed["seed_style"]
    ceiling = steps / speed["seed_style"]
    rows = [
        [
            "training images/s (data loading included)",
            number(speed["seed_style"]),
            number(speed["cifar_exp"]),
            f"**{ratio:.2f}x**",
        ],
        [
            "test accuracy after the epoch",
            percent(acc["seed_style"]),
            percent(acc["cifar_exp"]),
            f"runs spread {percent(acc['range'])}",
        ],
        [
            "batches alone, no model (images/s)",
            figure(alone["seed_style"]),
            figure(alone["cifar_exp"]),
            figure(alone["ratio"], unit="x"),
        ],
        [
            "LeNet5 + Adam steps alone, one fixed batch, no data (images/s)",
            number(steps),
            "",
            f"ceiling {ceiling:.2f}x",
        ],
    ]
    head = ["one LeNet5 epoch, batch 32", "seed-style", "cifar-exp", "ratio"]
    decode = result["decode"]
    return (
        f"Medians of {count(result['rounds'], 'round')}.\n\n{table(head, 'lrrr', rows)}\n\n"
        f"cifar-exp's epoch runs at {speed['cifar_exp'] / steps:.0%} of the ceiling that the "
        f"model's step alone sets. One-time costs: decoding the {number(decode['images'])} "
        f"images took {decode['seconds']:.1f} s ({number(decode['images_per_s'])} images/s); "
        f"a later start loads the cache in {result['cached_load_s']:.2f} s; a whole run spends "
        f"{figure(result['startup_s'], 1, ' s')} outside its training loop."
    )


def augment(result: dict) -> str:
    """bench_augment.py's rows: each augmentation's images/s beside the resnet20 step."""
    rows = []
    for r in result["rows"]:
        share = "" if r["epoch_share"] is None else percent(round(r["epoch_share"], 3))
        name = r["name"] if r["epoch_share"] is None else f"`{r['name']}`"
        rows.append(
            [name, number(r["images_per_s"]), f"{number(r['min'])}-{number(r['max'])}", share]
        )
    args = result["args"]
    setting = (
        f"Batch {args['batch_size']}, medians of {count(args['rounds'], 'alternating round')} "
        f"({count(args['steps'], 'resnet20 step')} and {args['batches']} augmented batches "
        "each). Every augmentation is crop + flip and the option named; share: augmentation "
        "time / (augmentation + resnet20 step) per image."
    )
    head = ["per batch", "images/s", "min-max", "share of a resnet20 epoch"]
    text = f"{setting}\n\n{table(head, 'lrrr', rows)}"
    if not result.get("workers"):
        return text
    raced = [
        [
            f"`{r['name']}`",
            number(r["workers_0_images_per_s"]),
            number(r["workers_1_images_per_s"]),
            f"{r['ratio']:.2f}",
        ]
        for r in result["workers"]
    ]
    head = ["policy", "`augment.workers=0`", "`augment.workers=1`", "ratio"]
    return (
        f"{text}\n\nTraining resnet20 on each policy's batches, {args['train_batches']} batches "
        "a round, the batches made in the training loop or prepared ahead by one worker "
        f"process (images/s, medians of the same rounds):\n\n{table(head, 'lrrr', raced)}"
    )


def gpu_check(result: dict) -> str:
    """gpu_check.py's three parts: the CUDA paths, the throughput table, the race."""
    rows = [
        [p["path"], "ok" if p["ok"] else f"FAILED: {p['problem']}", f"{p['seconds']:.1f}"]
        for p in result["paths"]
    ]
    parts = [table(["CUDA path", "result", "seconds"], "llr", rows)]
    parts.append(result["bench_gpu"]["table"] or "(bench_gpu.py gave no table)")
    if result["race"]["groups"]:
        parts.append(race({"race": result["race"]["groups"], **result["race"]}))
    return "\n\n".join(parts)


def epoch(result: dict) -> str:
    """bench_epoch_vs_airbench.py's rows: each loop's epoch, median of the rounds."""
    rows = [
        [
            r["loop"],
            f"{r['median_s']:.2f} s",
            f"{r['min_s']:.2f}-{r['max_s']:.2f} s",
            number(r["images_per_s"]),
            f"{r['vs_airbench94']:.2f}x",
        ]
        for r in result["rows"]
    ]
    head = ["loop", "epoch (median)", "min-max", "images/s", "vs airbench94's"]
    setting = (
        f"Widths {'/'.join(map(str, result['widths']))}, {number(result['images_per_epoch'])} "
        f"images an epoch (its epoch 2, the whitening bias trained), medians of "
        f"{count(result['rounds'], 'alternating round')} on `{result['torch_device']}`. "
        f"airbench94: {result['airbench94']}."
    )
    return f"{setting}\n\n{table(head, 'lrrrr', rows)}"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"


def dashboard(result: dict) -> str:
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
        rows.append([name, milliseconds(seconds), f"{seconds / epoch:.2%}"])
    head = ["part", "median", f"share of a {epoch:.2f} s epoch"]
    wall = result["wall_s"]
    return (
        f"Parts: medians of {result['repeats']} in one process; whole runs: "
        f"{count(result['rounds'], 'alternating round')}.\n\n{table(head, 'lrr', rows)}\n\n"
        f"End to end, one-epoch runs (the worst case: every one-time cost in one epoch) took "
        f"{wall['with_pictures']:.2f} s with pictures and {wall['without']:.2f} s without "
        f"(medians of {count(result['runs_each'], 'run')} each, "
        f"{wall['with_pictures'] / wall['without']:.2f}x)." + trackers(result)
    )


def trackers(result: dict) -> str:
    """The trackers' table of a dashboard result, when it measured them."""
    if "trackers_s" not in result:
        return ""
    epoch = result["epoch_s"]
    rows = [
        [f"`{name}`", milliseconds(c["epoch"]), f"{c['epoch'] / epoch:.2%}"]
        + [milliseconds(c["open"])]
        for name, c in result["trackers_s"].items()
    ]
    head = ["tracker (alone)", "one epoch's logging", "share of the epoch", "opening its run"]
    return (
        f"\n\nEach tracker alone, in the same process: one epoch's logging (the per-step points "
        f"every {result['log_every_n_steps']} steps, then the epoch's values; median of "
        f"{result['repeats']} epochs) and opening its run once, its import included.\n\n"
        + table(head, "lrrr", rows)
    )


def cpu_title(result: dict) -> str:
    models = ", ".join(f"`{m}`" for m in result["args"]["models"])
    return f"{result['cpu']['model']}: {models}, batch {result['args']['batch_size']}"


def gpu_title(result: dict) -> str:
    return f"{result['device']}, batch {result['args']['batch_size']}"


def machine_title(result: dict) -> str:
    return result["cpu"]["model"]


@dataclass(frozen=True)
class Kind:
    """One section of the page: its heading, what the script measures, how a result reads."""

    heading: str
    about: str
    body: Callable[[dict], str]
    title: Callable[[dict], str] = machine_title
    missing: str = "No result yet."


KINDS = {
    "time_to_accuracy": Kind(
        "Time to accuracy",
        "`scripts/bench_time_to_accuracy.py` trains, one after the other on the same image "
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
        "python scripts/bench_time_to_accuracy.py --root <CIFAR-10 image folder> --json tta.json\n"
        "# a quick subset: one preset, shorter budgets, fewer images\n"
        "python scripts/bench_time_to_accuracy.py --root <folder> --experiments seed_lenet5 \\\n"
        "    --override trainer.epochs=3 --post-epochs 3 --post-resnet-epochs 1 \\\n"
        "    --limit-train 5000 --limit-test 1000\n"
        "```",
        time_to_accuracy,
    ),
    "epoch": Kind(
        "One epoch against airbench94's loop",
        "`scripts/bench_epoch_vs_airbench.py` times one steady-state training epoch three ways, "
        "in one process on the same tensors, alternating every round: cifar-exp's "
        "`Trainer.epoch` for `experiment=speedrun94` (its `train_s`), a bare loop over the "
        "same Trainer's loader, model, optimizer, schedule and weight average (autocast, loss, "
        "backward, step and nothing else), and airbench94's own code (its second epoch). The "
        "gap between the first two is what cifar-exp's loop adds; the last ratio is the "
        "epoch's speed against the reference, free of the run-to-run spread that the races "
        "above carry.\n\n"
        "```bash\n"
        "python scripts/bench_epoch_vs_airbench.py --root <CIFAR-10 image folder> --rounds 4\n"
        "```",
        epoch,
    ),
    "presets": Kind(
        "Preset runs",
        "Single runs of the presets in `conf/experiment/` with this tool, each with the command "
        "it ran and what it reached on the test split.",
        presets,
    ),
    "cpu": Kind(
        "CPU training throughput",
        "`scripts/bench_cpu.py` trains each model in each variant (precision, memory format, "
        "compilation) on one fixed batch already in memory, so only the training step is timed "
        "(Adam 1e-3, as in the seed post). The rounds alternate the variants; the tables give "
        "median images/s and the ratio to fp32. `resnet` is the seed post's ResNet.",
        throughput,
        cpu_title,
    ),
    "gpu": Kind(
        "GPU training throughput",
        "`scripts/bench_gpu.py` times the same training step as the CPU benchmark for "
        "`lenet5`, `resnet` and `resnet18` in fp32, bf16 and fp16, each with and without "
        "channels_last, and bf16 + channels_last + compile (batch 256), with the peak CUDA "
        "memory of each variant; then two full `resnet18` epochs over 50,000 CIFAR-sized "
        "images held on the GPU, in fp32 and in the fastest variant.",
        throughput,
        gpu_title,
        "Not measured yet: no GPU has been at hand, so the GPU-only paths (NCCL, fp16 with its "
        "GradScaler, one GPU per local rank) have not run either. On a GPU, "
        "`python scripts/bench_gpu.py --json docs/benchmarks/gpu-<label>.json` measures it in "
        "one call of a few minutes (`--dry-run` checks the script in seconds, also on a CPU).",
    ),
    "gpu_check": Kind(
        "GPU check",
        "`scripts/gpu_check.py` runs, in about 8 minutes on one GPU, every CUDA path of "
        "cifar-exp (NCCL under torchrun with 1 process, fp16 with its GradScaler, bf16, "
        "channels_last, compile, `dataset.on_device=true`; each a real run whose manifest must "
        "name the GPU), `scripts/bench_gpu.py`'s throughput table, and the airbench race "
        "(`scripts/bench_time_to_accuracy.py --experiments speedrun94 --contenders airbench94 "
        "--seeds 5`), and writes one JSON and one markdown table.\n\n"
        "```bash\n"
        "python scripts/gpu_check.py --out gpu_check   # then copy gpu_check/gpu_check.json to\n"
        "                                              # docs/benchmarks/gpu_check-<label>.json\n"
        "python scripts/gpu_check.py --dry-run --out check   # on a CPU: checks the script\n"
        "```",
        lambda result: gpu_check(result),
        lambda result: result["device"],
        "Not measured yet: no GPU has been lent to this project so far, so neither the CUDA "
        "paths nor the race on a GPU have run. No GPU figure is given anywhere on this page.",
    ),
    "data": Kind(
        "Data loading",
        "`scripts/bench_data.py` trains one LeNet5 epoch (batch 32, Adam 1e-3) on the JPEG "
        "CIFAR-10 folder with the seed post's pipeline (torchvision `ImageFolder` + per-image "
        "`ToTensor` + `DataLoader(batch_size=32, shuffle=True)`) and with `python -m "
        "cifar_exp.run`, alternating the two; it also times each pipeline's batches without a "
        "model, and the model's steps on one fixed batch without any data loading, which no "
        "data path can beat.",
        data,
    ),
    "dashboard": Kind(
        "Dashboard pictures",
        "`scripts/bench_dashboard.py` times, on the JPEG CIFAR-10 (LeNet5, batch 32, one "
        "epoch, evaluation on the 10,000 test images), each part of the pictures of the "
        "Images tab in one process, and whole runs with `trainer.log_images=true` and "
        "`false`, alternating; since 2026-12-02 also each tracker of `tracker=[...]` alone "
        "(docs/trackers.md).",
        dashboard,
    ),
    "augment": Kind(
        "Augmentation cost",
        "`scripts/bench_augment.py` times, in one process and alternating, a resnet20 training "
        "step (fp32, Adam 1e-3, one fixed batch in memory) and each augmentation's training "
        "batches (cut from a split of random 8-bit images, then crop + flip and the policy, "
        "cutout, MixUp or CutMix that `augment.*` sets), and gives each one's share of an epoch "
        "that augments and trains one after the other on the same cores. The per-image "
        "policies run torchvision's transforms image by image. Then it trains resnet20 on each "
        "policy's batches with `augment.workers=0` and `1`, alternating.\n\n"
        "```bash\n"
        "python scripts/bench_augment.py --threads 2 --json docs/benchmarks/augment-<label>.json\n"
        "```",
        augment,
    ),
}

INTRO = """\
# Benchmarks

Every figure on this page was measured with a script in `scripts/`; each table names the
command, the machine (CPU model and the flags that matter: AVX, AMX, native bf16) and the
date. Figures differ on other machines: run the command to see yours.

!!! note "Generated page"
    `python scripts/render_benchmarks.py` writes this page from the results in
    `docs/benchmarks/*.json` (a test checks that it is current). To add a measurement, run a
    script with `--json docs/benchmarks/<kind>-<label>.json` (kind: `cpu`, `gpu`, `data`,
    `dashboard`, `augment`, `time_to_accuracy`, `epoch`, `gpu_check`), then render the page
    again.
"""


def load(folder: Path) -> dict[str, list[dict]]:
    """The results in `folder` by kind, each kind's files in name order."""
    found: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for path in sorted(folder.glob("*.json")):
        kind = path.stem.split("-")[0]
        if kind not in KINDS:
            known = ", ".join(KINDS)
            raise SystemExit(
                f"{path}: unknown kind {kind!r}; name it <kind>-<label>.json ({known})"
            )
        found[kind].append(json.loads(path.read_text()))
    return found


def render(folder: Path = RESULTS) -> str:
    parts = [INTRO]
    for kind, results in load(folder).items():
        spec = KINDS[kind]
        prose, fence, code = spec.about.partition("\n\n```")
        parts.append(
            f"## {spec.heading}\n\n{textwrap.fill(prose, 96)}" + (f"\n\n```{code}" if fence else "")
        )
        if not results:
            parts.append(spec.missing)
        for result in results:
            section = [f"### {spec.title(result)}" if len(results) > 1 else ""]
            section += [provenance(result), spec.body(result), notes(result)]
            parts.append("\n\n".join(s for s in section if s))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args()
    page = render()
    if not args.check:
        PAGE.write_text(page)
        return
    current = PAGE.read_text() if PAGE.exists() else ""
    if current != page:
        diff = difflib.unified_diff(
            current.splitlines(), page.splitlines(), "docs/benchmarks.md", "rendered", lineterm=""
        )
        sys.exit(
            "\n".join([*diff, "docs/benchmarks.md is stale: run scripts/render_benchmarks.py"])
        )


if __name__ == "__main__":
    main()
