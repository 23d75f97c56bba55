"""What `python -m cifar_exp.report <sweep or run folders, or globs>` makes: one PNG and one
table.

For one sweep: accuracy (and train loss) per epoch for every job into report.png, and the
sweep's summary.csv / summary.md rewritten from the job folders (so it also works on an
interrupted sweep). For several folders (sweeps, runs, or both): one table and one plot over
all their jobs, grouped by the keys that differ between them, with mean ± std over seeds.

Where the files go is WHERE, which --help shows: one folder keeps its report, several
folders are only read and their report lands where the command runs. The PNG's path is
printed last.
"""

from __future__ import annotations

import glob
import logging
import statistics
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cifar_exp.errors import UserError
from cifar_exp.sweeps.study_plots import write_study_plots
from cifar_exp.sweeps.summary import (
    SEED_KEY,
    Job,
    find_jobs,
    is_run_dir,
    job_rows,
    label,
    load_job,
    render,
    seed_groups,
    sort_metric,
    varying_keys,
    write_csv,
    write_summary,
)

log = logging.getLogger("cifar_exp.report")

WHERE = (
    "One folder: report.png goes into that folder (a sweep's beside its summary.md and "
    "summary.csv, which are rewritten; a run's table is only printed). Several folders: they "
    "are only read; report.png, report.md and report.csv go into the folder the command runs "
    "in. --out puts the PNG elsewhere (and, for several folders, the tables beside it)."
)


def collect(path: Path) -> tuple[list[Job], bool]:
    """The jobs in a sweep folder, or the one run of a run folder; and whether it is a sweep."""
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; give a sweep folder or a run folder")
    if is_run_dir(path):
        return [load_job(path)], False
    jobs = find_jobs(path)
    if not jobs:
        raise UserError(
            f"no runs in {path}: give a run folder (one with .hydra/ and metrics.json) or a "
            "sweep folder that holds run folders, e.g. outputs/multirun/<date>/<time>"
        )
    return jobs, True


def expand(patterns: list[str]) -> list[Path]:
    """Folders as given, a quoted glob ('outputs/multirun/*/*') expanded, each once."""
    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise UserError(f"{pattern} matches no folder; give sweep or run folders")
        paths += [Path(p) for p in found if Path(p) not in paths]
    return paths


def setting(config: DictConfig, key: str, typed: str | None) -> str:
    """What `key` was in a run's config: a group's option name, a value as the run read it
    (so 1e-3 and 0.001 compare equal), or the override as typed when the config lacks it."""
    value = OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
    if isinstance(value, DictConfig):
        value = value.get("name")
    if value is None:
        return typed or ""
    return str(value)


def comparable(jobs: list[Job]) -> list[Job]:
    """Jobs of several folders with every key any of them overrides, read from each job's
    saved config, so a key one sweep varies and another leaves at its default compares."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    for job in jobs:
        saved = job.path / ".hydra" / "config.yaml"
        config = OmegaConf.load(saved) if saved.is_file() else OmegaConf.create()
        job.overrides = {k: setting(config, k, job.overrides.get(k)) for k in keys}
    return jobs


def collect_all(paths: list[Path]) -> list[Job]:
    """The jobs of several folders, each named by its folder relative to their common one."""
    jobs = [job for path in paths for job in collect(path)[0]]
    root = Path(*_common_parts([j.path.absolute() for j in jobs]))
    for job in jobs:
        job.name = str(job.path.absolute().relative_to(root))
    return comparable(jobs)


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    parts = paths[0].parent.parts
    for path in paths[1:]:
        while path.parts[: len(parts)] != parts:
            parts = parts[:-1]
    return parts


def curve_groups(jobs: list[Job]) -> list[tuple[str, list[Job]]]:
    """Jobs drawn as one curve: those that differ only by seed when seeds vary, else each."""
    keys = varying_keys(jobs)
    if SEED_KEY not in keys:
        return [
            (f"{j.num}: {label(j, keys)}" if len(jobs) > 1 else label(j, keys), [j]) for j in jobs
        ]
    others = [k for k in keys if k != SEED_KEY]
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(label(job, others) or "(all)", []).append(job)
    return [(f"{name} (n={len(members)})", members) for name, members in groups.items()]


def mean_curve(members: list[Job], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs, mean and std (0 for one job) of `metric` over the jobs that reached each epoch."""
    by_epoch: dict[int, list[float]] = {}
    for job in members:
        for e in job.epochs:
            if metric in e:
                by_epoch.setdefault(e["epoch"], []).append(e[metric])
    epochs = sorted(by_epoch)
    means = [statistics.fmean(by_epoch[e]) for e in epochs]
    stds = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]
    return epochs, means, stds


def plot(jobs: list[Job], out: Path) -> None:
    """Accuracy (the ranking metric) and train loss per epoch, one line per job or seed group
    (mean, with a ± std band); failed and pruned jobs dashed, a pruned one's end crossed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    acc = sort_metric(jobs)
    name = acc.replace("_acc", "").replace("val", "validation")
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for text, members in curve_groups(jobs):
        style = "-" if all(j.ok for j in members) else "--"
        if len(members) == 1 and not members[0].ok:
            text = f"{text} ({members[0].status})"[:90]
        for ax, metric in ((acc_ax, acc), (loss_ax, "train_loss")):
            epochs, means, stds = mean_curve(members, metric)
            (line,) = ax.plot(epochs, means, style, marker=".", label=text)
            if len(members) == 1 and members[0].pruned and epochs:
                # Where the search's pruner stopped it: a cross at the curve's end.
                ax.plot(epochs[-1:], means[-1:], "x", color=line.get_color(), markersize=10)
            if len(members) > 1:
                low = [m - s for m, s in zip(means, stds, strict=True)]
                high = [m + s for m, s in zip(means, stds, strict=True)]
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
    acc_ax.set(xlabel="epoch", ylabel=f"{name} accuracy", title=f"{name.capitalize()} accuracy")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="Train loss", yscale="log")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_tables(jobs: list[Job], out: Path) -> str:
    """The table of several folders' jobs beside the plot: <out>.md, <out>.csv (and
    <out>-seeds.csv with seed groups); returns the Markdown."""
    columns, rows = job_rows(jobs)
    write_csv(out.with_suffix(".csv"), columns, rows)
    groups = seed_groups(jobs)
    if groups:
        write_csv(out.with_name(f"{out.stem}-seeds.csv"), list(groups[0]), groups)
    table = render(jobs)
    out.with_suffix(".md").write_text(table)
    return table


def report(paths: list[Path], out: Path | None = None) -> tuple[Path, str, list[Job]]:
    """Write the plot and the table; return the PNG path, the table and the jobs.

    One sweep's table goes to its summary files, one run's nowhere (it is printed); the
    table of several folders goes beside the plot (default: report.png where you stand).
    A search's folder also gets its study's plots beside the PNG (study_plots.py).
    """
    if len(paths) == 1:
        jobs, is_sweep = collect(paths[0])
        out = out or paths[0] / "report.png"
        plot(jobs, out)
        table = write_summary(paths[0], jobs) if is_sweep else render(jobs)
        if is_sweep and (studied := write_study_plots(paths[0], out.parent)):
            table = (table or "") + "\nStudy plots: " + ", ".join(str(p) for p in studied) + "\n"
        return out, table or "", jobs
    jobs = collect_all(paths)
    out = out or Path("report.png")
    plot(jobs, out)
    return out, write_tables(jobs, out), jobs


def quiet_matplotlib() -> None:
    """Matplotlib logs its font cache being built (on first use) at INFO/WARNING: a note for
    its developers, not for someone reading a report."""
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
