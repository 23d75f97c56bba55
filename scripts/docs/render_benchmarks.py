"""Render docs/benchmarks.md from the benchmark results in docs/benchmarks/*.json.

    python scripts/docs/render_benchmarks.py            # rewrite docs/benchmarks.md
    python scripts/docs/render_benchmarks.py --check    # exit 1 when it differs from the JSON

Each result is named `<kind>-<label>.json`, its kind saying which script wrote it:
`time_to_accuracy` (scripts/bench/time_to_accuracy.py), `epoch`
(scripts/bench/epoch_vs_airbench.py), `presets` (runs of the presets), `cpu`
(scripts/bench/cpu.py), `gpu` (scripts/bench/gpu.py), `gpu_check` (scripts/checks/gpu_check.py),
`data` (scripts/bench/data.py), `dashboard` (scripts/bench/dashboard.py), `augment`
(scripts/bench/augment.py), `startup` (scripts/bench/startup.py), `search_modes`
(scripts/bench/search_modes.py), `layers` (scripts/bench/layers.py). Every figure on the page comes
from these files, each table with the command, the CPU model and flags and the date its file
records. Each script holds its own section (its `SECTION`: the heading, the prose that says what
it measures, the same for every result, and how a result reads); this renderer puts the sections
together in the order of KINDS.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from pathlib import Path

# Each benchmark keeps its section of the page beside its code, in scripts/bench (the GPU
# check in scripts/checks); they import each other by bare name, as when run from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "checks"))

import augment
import cpu
import dashboard
import data
import epoch_vs_airbench
import gpu
import gpu_check
import layers
import page
import search_modes
import startup
import time_to_accuracy

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "benchmarks"
PAGE = REPO / "docs" / "benchmarks.md"


def presets(result: dict) -> str:
    rows = []
    for run in result["runs"]:
        best = page.percent(run["best_test_acc"])
        if run["best_epoch"] is not None:
            best += f" (epoch {run['best_epoch']})"
        minutes = "—" if run["train_min"] is None else f"{run['train_min']:.1f} min"
        rows.append(
            [
                f"`{run['preset']}`",
                f"`{run['command']}`",
                str(run["epochs"]),
                str(run["seed"]),
                page.percent(run["final_test_acc"]),
                best,
                page.percent(run["train_acc"]),
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
    return page.table(head, "llrrrrrr", rows)


# The page's sections in its order, by kind. No script writes `presets`: its results are
# runs of the presets recorded by hand, so its section lives here.
KINDS: dict[str, page.Section] = {
    "time_to_accuracy": time_to_accuracy.SECTION,
    "epoch": epoch_vs_airbench.SECTION,
    "layers": layers.SECTION,
    "presets": page.Section(
        heading="Preset runs",
        about=(
            "Single runs of the presets in `conf/experiment/` with this tool, each with the "
            "command it ran and what it reached on the test split."
        ),
        body=presets,
    ),
    "cpu": cpu.SECTION,
    "gpu": gpu.SECTION,
    "gpu_check": gpu_check.SECTION,
    "data": data.SECTION,
    "dashboard": dashboard.SECTION,
    "augment": augment.SECTION,
    "startup": startup.SECTION,
    "search_modes": search_modes.SECTION,
}

INTRO = """\
# Benchmarks

Every figure on this page was measured with a script in `scripts/`; each table names the
command, the machine (CPU model and the flags that matter: AVX, AMX, native bf16) and the
date. Figures differ on other machines: run the command to see yours.

!!! note "Generated page"
    `python scripts/docs/render_benchmarks.py` writes this page from the results in
    `docs/benchmarks/*.json` (a test checks that it is current). To add a measurement, run a
    script with `--json docs/benchmarks/<kind>-<label>.json` (kind: `cpu`, `gpu`, `data`,
    `dashboard`, `augment`, `time_to_accuracy`, `epoch`, `gpu_check`, `startup`,
    `search_modes`, `layers`), then render
    the page again.
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


def notes(result: dict) -> str:
    return "\n".join(f"- {note}" for note in result.get("notes", []))


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
            section += [page.provenance(result), spec.body(result), notes(result)]
            parts.append("\n\n".join(s for s in section if s))
    return "\n\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args()
    rendered = render()
    if not args.check:
        PAGE.write_text(rendered)
        return
    current = PAGE.read_text() if PAGE.exists() else ""
    if current != rendered:
        diff = difflib.unified_diff(
            current.splitlines(),
            rendered.splitlines(),
            "docs/benchmarks.md",
            "rendered",
            lineterm="",
        )
        sys.exit(
            "\n".join([*diff, "docs/benchmarks.md is stale: run scripts/docs/render_benchmarks.py"])
        )


if __name__ == "__main__":
    main()
