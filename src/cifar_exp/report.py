"""`python -m cifar_exp.report <sweep or run folders, or globs>`: one PNG and one table
over the jobs of sweeps and runs (sweeps/report.py makes them)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cifar_exp.errors import UserError
from cifar_exp.sweeps.report import WHERE, expand, quiet_matplotlib, report

log = logging.getLogger("cifar_exp.report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cifar_exp.report",
        description="Plot accuracy per epoch for every job of one or more sweeps (or runs) and "
        "print one table, grouped by the keys that differ, with mean ± std over seeds. " + WHERE,
    )
    parser.add_argument(
        "paths", nargs="+", help="sweep or run folders, or quoted globs ('outputs/multirun/*/*')"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the PNG to write (default: <folder>/report.png for one folder, ./report.png for "
        "several)",
    )
    args = parser.parse_args(argv)
    # force: its lines go to this terminal whatever configured logging before (a caller, a test).
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    quiet_matplotlib()
    try:
        png, table, _ = report(expand(args.paths), args.out)
    except UserError as err:
        log.error("error: %s", err)
        return 1
    # The table is the command's output, not a diagnostic.
    print(table)
    print(f"Plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
