"""`python -m cifar_exp.report <sweep or run folder>`: one PNG and one table for a sweep.

Draws test accuracy (and train loss) per epoch for every job into report.png, rewrites the
sweep's summary.csv / summary.md from the job folders (so it also works on an interrupted
sweep) and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cifar_exp.errors import UserError
from cifar_exp.summary import (
    Job,
    find_jobs,
    is_run_dir,
    label,
    load_job,
    render,
    varying_keys,
    write_summary,
)

log = logging.getLogger("cifar_exp.report")


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


def plot(jobs: list[Job], out: Path) -> None:
    """Test accuracy and train loss per epoch, one line per job; failed jobs dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = varying_keys(jobs)
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for job in jobs:
        name = f"{job.num}: {label(job, keys)}" if len(jobs) > 1 else label(job, keys)
        style = "-" if job.ok else "--"
        tested = [e for e in job.epochs if "test_acc" in e]
        acc_ax.plot(
            [e["epoch"] for e in tested], [e["test_acc"] for e in tested], style, marker="."
        )
        loss_ax.plot(
            [e["epoch"] for e in job.epochs],
            [e["train_loss"] for e in job.epochs],
            style,
            marker=".",
            label=name if job.ok else f"{name} ({job.status})"[:90],
        )
    acc_ax.set(xlabel="epoch", ylabel="test accuracy", title="Test accuracy")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="Train loss", yscale="log")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def report(path: Path, out: Path | None = None) -> tuple[Path, str]:
    """Write the plot (and, for a sweep, the summary files); return the PNG path and table."""
    jobs, is_sweep = collect(path)
    out = out or path / "report.png"
    plot(jobs, out)
    table = write_summary(path, jobs) if is_sweep else render(jobs)
    return out, table or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cifar_exp.report",
        description="Plot test accuracy per epoch for every job of a sweep (or one run) and "
        "print the summary table.",
    )
    parser.add_argument("path", type=Path, help="a sweep folder or a run folder")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: <path>/report.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        png, table = report(args.path, args.out)
    except UserError as err:
        log.error("error: %s", err)
        return 1
    # The table is the command's output, not a diagnostic.
    print(table)
    print(f"Plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
