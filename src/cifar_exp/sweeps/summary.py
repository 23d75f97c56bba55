"""Sweep summaries: one row per job read back from its folder, best first, and seed groups.

A job folder holds `.hydra/` (its overrides and number), `metrics.json` (written by the run's
tracker) and `manifest.json` (the run's status: ok, failed with the reason, interrupted).
Nothing here needs torch.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cifar_exp.records.commands import override, run_command
from cifar_exp.records.manifest import read_manifest
from cifar_exp.records.naming import NOT_SWEPT

SEED_KEY = "trainer.seed"

# (column, metrics.json `final` key, heading). Accuracy columns no job has are left out,
# e.g. val_* for runs without a validation split.
METRIC_COLUMNS = [
    ("val_acc", "val_acc", "val acc"),
    ("best_val_acc", "best_val_acc", "best val acc"),
    ("test_acc", "test_acc", "test acc"),
    ("best_test_acc", "best_test_acc", "best test acc"),
    ("test_ece", "test_ece", "test ECE"),
    ("final_train_loss", "train_loss", "final train loss"),
]
GROUP_METRICS = ["val_acc", "best_val_acc", "test_acc", "best_test_acc"]
# (column, heading) of the epoch a stop rule ended a job at (stop_rules.py), beside its epochs;
# left out when no job stopped that way.
STOP_COLUMNS = [("stopped_early_at_epoch", "stopped early at epoch")]
# The model's size, from the manifest (runs made before it was recorded have none).
SIZE_COLUMNS = ["params", "flops"]


@dataclass
class Job:
    """What one run left in its folder."""

    num: int
    path: Path
    overrides: dict[str, str]
    status: str
    final: dict[str, float] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)
    # The folder as the table names it: its name, or sweep/name in a report of several sweeps.
    name: str = ""
    # The model's parameters and FLOPs per image, as its manifest records them.
    size: dict[str, int] = field(default_factory=dict)
    # dataset.val_size as the job was configured (its .hydra/config.yaml), failed or not;
    # None when the folder does not say.
    val_size: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def pruned(self) -> bool:
        """Stopped by a search's pruner (pruning.py): it trained, and ended as asked."""
        return self.status.startswith("pruned")

    def value(self, column: str) -> float | None:
        """A column's number, or None when the job has none."""
        key = dict((c, k) for c, k, _ in METRIC_COLUMNS).get(column, column)
        if key in self.final:
            return self.final[key]
        if column in SIZE_COLUMNS:
            return self.size.get(column)
        if column == "epochs":
            return len(self.epochs)
        if column == "wall_s":
            return sum(e.get("epoch_s", 0.0) for e in self.epochs) if self.epochs else None
        if column == "images_per_s":
            rates = [e["images_per_s"] for e in self.epochs if "images_per_s" in e]
            return statistics.median(rates) if rates else None
        return None


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "overrides.yaml").is_file()


def job_status(path: Path, final: dict[str, Any]) -> str:
    """'ok', or '<failed|interrupted>: <one-line reason>' from the job's manifest."""
    manifest = read_manifest(path) or {}
    status = manifest.get("status")
    if status == "pruned":
        return f"pruned at epoch {manifest.get('pruned_at_epoch', '?')}"
    if status in ("failed", "interrupted"):
        reason = (manifest.get("reason") or "no reason recorded").strip().splitlines()
        return f"{status}: {reason[0] if reason else 'no reason recorded'}"
    if final:
        return "ok"
    return "failed: no final metrics (the job was killed or crashed; see its run.log)"


def load_job(path: Path) -> Job:
    """A job as its folder records it. A damaged file (cut short, edited) makes the job's
    status 'damaged: <file and what is wrong>' rather than stopping the whole summary."""
    damaged: list[str] = []

    def read(name: str, load: Any, default: Any) -> Any:
        file = path / name
        if not file.is_file():
            return default
        try:
            return load(file)
        except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
            damaged.append(f"{name} is damaged ({' '.join(str(err).split())[:120]})")
            return default

    overrides = [str(o) for o in read(".hydra/overrides.yaml", OmegaConf.load, [])]
    prefix = path.name.split("_", 1)[0]
    hydra_cfg = read(".hydra/hydra.yaml", OmegaConf.load, OmegaConf.create())
    num = OmegaConf.select(hydra_cfg, "hydra.job.num", default=None)
    num = num if num is not None else int(prefix) if prefix.isdigit() else 0
    metrics = read("metrics.json", lambda file: json.loads(file.read_text()), {})
    final = (metrics.get("final") or {}) if isinstance(metrics, dict) else {}
    status = job_status(path, final)
    if damaged:
        fix = (
            f"{run_command([override('resume', path)])} records it again from its last.pt"
            if damaged[0].startswith("metrics.json")
            else "restore it, or remove the job's folder to run the job again"
        )
        status = f"damaged: {damaged[0]}; {fix}"
    size = (read_manifest(path) or {}).get("model") or {}
    config = read(".hydra/config.yaml", OmegaConf.load, OmegaConf.create())
    val_size = OmegaConf.select(config, "dataset.val_size", default=None)
    return Job(
        num=int(num),
        path=path,
        overrides=dict(
            o.split("=", 1) for o in overrides if "=" in o and o.split("=")[0] not in NOT_SWEPT
        ),
        status=status,
        final=final,
        epochs=metrics.get("epochs", []) if isinstance(metrics, dict) else [],
        size={k: v for k, v in size.items() if k in SIZE_COLUMNS},
        val_size=None if val_size is None else int(val_size),
    )


def find_jobs(sweep_dir: Path) -> list[Job]:
    """The job folders directly under a sweep folder, by job number."""
    jobs = [load_job(p) for p in sorted(sweep_dir.iterdir()) if p.is_dir() and is_run_dir(p)]
    return sorted(jobs, key=lambda j: j.num)


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (all of them for a single job)."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    if len(jobs) < 2:
        return keys
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def label(job: Job, keys: list[str]) -> str:
    return " ".join(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)


def sweep_metric(final: dict[str, float]) -> float:
    """What a run returns to Hydra (what sweepers optimize): validation accuracy when the run
    held out a validation split, so that a sweep never selects on the test set, else test."""
    return final.get("val_acc", final["test_acc"])


def sort_metric(jobs: list[Job]) -> str:
    """The summary's order: the same metric the runs returned to Hydra."""
    return "val_acc" if any(j.value("val_acc") is not None for j in jobs) else "test_acc"


def scored_part(final: dict[str, Any], split: str) -> str:
    """' on 1,000 of 10,000 test images, all 10 classes (trainer.limit_eval_batches)' when a
    limit cut the evaluation of `split`, else ''."""
    if f"{split}_images" not in final:
        return ""
    scored, total = final[f"{split}_images"], final[f"{split}_images_total"]
    classes, all_classes = final.get(f"{split}_classes"), final.get(f"{split}_classes_total")
    if classes is None:  # recorded before the part was stratified: the split's first images
        kind = "its first ones"
    elif classes == all_classes:
        kind = f"all {classes} classes"
    else:
        kind = f"{classes} of {all_classes} classes"
    return f" on {scored:,} of {total:,} {split} images, {kind} (trainer.limit_eval_batches)"


def limit_note(jobs: list[Job]) -> str | None:
    """One line saying that accuracies cover part of a split, when a limit cut it."""
    parts = {
        part for job in jobs for split in ("val", "test") if (part := scored_part(job.final, split))
    }
    if not parts:
        return None
    return "Accuracies scored" + ";".join(sorted(parts)) + "."


def ranking_note(jobs: list[Job]) -> str | None:
    """One line warning that the order comes from the test set, when no job has a val split;
    when none finished, what the jobs were configured with (they may have failed *because*
    of their validation split)."""
    if sort_metric(jobs) == "val_acc":
        return None
    held_out = sorted({j.val_size for j in jobs if j.val_size})
    if held_out and not any(j.ok for j in jobs):
        sizes = ", ".join(str(n) for n in held_out)
        return (
            f"No job finished; they were configured to hold out a validation split "
            f"(dataset.val_size={sizes}), so a finished one is ranked by validation accuracy."
        )
    return (
        "Ranked by test accuracy: these runs hold out no validation split, so choosing among "
        "them selects on the test set; add dataset.val_size=5000 to rank on a validation split."
    )


def rank(jobs: list[Job]) -> list[Job]:
    """Finished jobs best first by the sweep's metric, then failed ones by job number."""
    metric = sort_metric(jobs)
    ok = sorted((j for j in jobs if j.ok), key=lambda j: -(j.value(metric) or 0.0))
    return ok + [j for j in jobs if not j.ok]


def metric_columns(jobs: list[Job]) -> list[tuple[str, str]]:
    return [(c, h) for c, _, h in METRIC_COLUMNS if any(j.value(c) is not None for j in jobs)]


def stop_columns(jobs: list[Job]) -> list[tuple[str, str]]:
    return [(c, h) for c, h in STOP_COLUMNS if any(j.value(c) is not None for j in jobs)]


def job_rows(jobs: list[Job]) -> tuple[list[str], list[dict[str, Any]]]:
    """The summary's columns and rows (raw numbers), best job first."""
    keys = varying_keys(jobs)
    metrics = [c for c, _ in metric_columns(jobs)]
    size = [c for c in SIZE_COLUMNS if any(j.value(c) is not None for j in jobs)]
    stops = [c for c, _ in stop_columns(jobs)]
    numbers = [*metrics, *size, "epochs", *stops, "wall_s", "images_per_s"]
    columns = ["job", "overrides", *keys, *numbers, "status", "dir"]
    rows = []
    for job in rank(jobs):
        row: dict[str, Any] = {"job": job.num, "overrides": label(job, keys)}
        row.update({k: job.overrides.get(k, "") for k in keys})
        row.update({c: job.value(c) for c in numbers})
        row.update(status=job.status, dir=job.name)
        rows.append(row)
    return columns, rows


def seed_groups(jobs: list[Job]) -> list[dict[str, Any]]:
    """Jobs that differ only by trainer.seed, with mean, sample std and n of finished jobs.

    Empty unless the sweep varies the seed. std is None for groups with fewer than 2 jobs.
    """
    keys = varying_keys(jobs)
    if SEED_KEY not in keys or len(jobs) < 2:
        return []
    others = [k for k in keys if k != SEED_KEY]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(label(job, others), []).append(job)
    metrics = [m for m in GROUP_METRICS if any(j.value(m) is not None for j in jobs)]
    result = []
    for name, members in groups.items():
        done = [j for j in members if j.ok]
        row: dict[str, Any] = {
            "overrides": name,
            "n": len(done),
            "failed": len(members) - len(done),
            "seeds": " ".join(j.overrides.get(SEED_KEY, "") for j in members),
        }
        for m in metrics:
            values = [j.value(m) for j in done if j.value(m) is not None]
            row[f"{m}_mean"] = statistics.fmean(values) if values else None
            row[f"{m}_std"] = statistics.stdev(values) if len(values) >= 2 else None
        result.append(row)
    metric = sort_metric(jobs)
    return sorted(result, key=lambda r: -(r.get(f"{metric}_mean") or 0.0))


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "wall_s":
        return f"{value:.1f}s"
    if column == "images_per_s":
        return f"{value:.0f}"
    if column in SIZE_COLUMNS:
        return f"{value / 1e6:,.2f}M"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|")


def markdown_table(headings: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(jobs: list[Job]) -> str:
    """The summary as Markdown: common overrides, the job table, the seed groups."""
    columns, rows = job_rows(jobs)
    keys = set(varying_keys(jobs))
    common = [f"{k}={v}" for k, v in jobs[0].overrides.items() if k not in keys]
    shown = [c for c in columns if c not in keys and c != "dir"]
    headings = dict(metric_columns(jobs)) | dict(stop_columns(jobs))
    headings.update(wall_s="wall time", images_per_s="images/s", flops="FLOPs / image")
    parts = [f"Jobs: {len(jobs)}, {sum(j.ok for j in jobs)} ok, sorted by {sort_metric(jobs)}."]
    parts += [note for note in (ranking_note(jobs), limit_note(jobs)) if note]
    if len(jobs) > 1 and common:
        parts.append("Common overrides: " + " ".join(common))
    parts.append(
        markdown_table(
            [headings.get(c, c) for c in shown],
            [[_cell(c, row[c]) for c in shown] for row in rows],
        )
    )
    groups = seed_groups(jobs)
    if groups:
        metrics = [m for m in GROUP_METRICS if f"{m}_mean" in groups[0]]
        table = []
        for g in groups:
            cells = [g["overrides"] or "(all)", str(g["n"]), str(g["failed"])]
            for m in metrics:
                mean, std = g[f"{m}_mean"], g[f"{m}_std"]
                cells.append(
                    "" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
                )
            table.append(cells)
        heads = ["overrides", "n", "failed", *(dict(headings).get(m, m) for m in metrics)]
        parts.append("By seed (mean ± sample std over finished jobs):")
        parts.append(markdown_table(heads, table))
    return "\n\n".join(parts) + "\n"


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: "" if r.get(c) is None else r[c] for c in columns} for r in rows)


def write_summary(sweep_dir: Path, jobs: list[Job] | None = None) -> str | None:
    """Write summary.csv, summary.md (and seeds.csv for multi-seed sweeps); return the table.

    None when the folder holds no job folders.
    """
    jobs = find_jobs(sweep_dir) if jobs is None else jobs
    if not jobs:
        return None
    columns, rows = job_rows(jobs)
    write_csv(sweep_dir / "summary.csv", columns, rows)
    groups = seed_groups(jobs)
    if groups:
        write_csv(sweep_dir / "seeds.csv", list(groups[0]), groups)
    table = render(jobs)
    (sweep_dir / "summary.md").write_text(table)
    return table
