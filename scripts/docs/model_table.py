"""Render the model table of docs/models.md, and the model list of `--help`, from the registry.

    python scripts/docs/model_table.py            # rewrite both
    python scripts/docs/model_table.py --check    # exit 1 when either committed one is stale

One row per registered model at its default options, then a few named variants: its
options (with their defaults), its parameters at 10 classes, and the floating-point
operations of one forward pass on one 32x32 image as torch.utils.flop_counter counts them
(a multiply-add is two; convolutions and matrix products only, so normalization and
activations are left out). Everything between the page's two markers is this script's
output, and so is the list under HELP_TITLE in conf/config.yaml's `--help` header.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from functools import cache
from pathlib import Path
from typing import Any

from cifar_exp.models import MODELS
from cifar_exp.models.stats import forward_flops, meta_model, param_counts

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "models.md"
BEGIN = "<!-- model table: written by scripts/docs/model_table.py, do not edit by hand -->"
END = "<!-- end of the model table -->"
CONFIG = REPO / "src" / "cifar_exp" / "conf" / "config.yaml"
HELP_TITLE = "      Models at their defaults (parameters, FLOPs per 32x32 image; docs/models.md):"
HELP_INDENT = " " * 8  # the list's lines, inside the header's block scalar
COMMON = {"name", "num_classes"}  # every model has them; the table leaves them out

# Configurations the papers' tables name, and the small-input stems beside their defaults.
VARIANTS: list[dict[str, Any]] = [
    {"name": "wrn", "depth": 16, "widen_factor": 8},
    {"name": "wrn", "depth": 40, "widen_factor": 4},
    {"name": "vgg", "depth": 11},
    {"name": "vgg", "depth": 19},
    {"name": "timm", "small_input": True},
    {"name": "torchvision", "small_input": True},
]


def defaults(name: str) -> dict[str, Any]:
    options = MODELS.options({"name": name})
    return {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name not in COMMON
    }


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{v}" for k, v in value.items()) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


@cache
def measured(name: str, changed: tuple[tuple[str, Any], ...] = ()) -> tuple[int, int]:
    return measure({"name": name, **dict(changed)})


def measure(node: dict[str, Any]) -> tuple[int, int]:
    """Parameters and forward FLOPs of one 32x32 image, at 10 classes, as a run counts them
    at its start (cifar_exp.models.stats, on the meta device)."""
    options = {**node, "num_classes": 10}
    return sum(param_counts(meta_model(options))), forward_flops(options, (3, 32, 32))


def millions(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def row(node: dict[str, Any]) -> str:
    params, flops = measured(node["name"], tuple((k, v) for k, v in node.items() if k != "name"))
    base = defaults(node["name"])
    if len(node) == 1:
        options = ", ".join(f"`{k}={shown(v)}`" for k, v in base.items()) or "none"
        command = f"`model={node['name']}`"
    else:
        options = "as above"
        changed = " ".join(f"model.{k}={shown(v)}" for k, v in node.items() if k != "name")
        command = f"`model={node['name']} {changed}`"
    return f"| {command} | {options} | {millions(params)} | {millions(flops)} |"


def table() -> str:
    lines = [
        "| model | options (defaults) | parameters | FLOPs / 32x32 image |",
        "|---|---|---:|---:|",
    ]
    nodes = [{"name": name} for name in MODELS.names()]
    for node in nodes + VARIANTS:
        lines.append(row(node))
    return "\n".join(lines)


def render(page: str) -> str:
    """`page` with the text between the markers replaced by the current table."""
    head, rest = page.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def render_help(config: str) -> str:
    """`config` (conf/config.yaml) with the list under HELP_TITLE replaced by the current one."""
    head, rest = config.split(HELP_TITLE + "\n")
    lines = rest.splitlines(keepends=True)
    kept = 0
    while kept < len(lines) and lines[kept].startswith(HELP_INDENT):
        kept += 1
    width = max(len(name) for name in MODELS.names())
    listed = [
        f"{HELP_INDENT}{name:<{width}}  {millions(params):>7}  {millions(flops):>10}\n"
        for name in MODELS.names()
        for params, flops in [measured(name)]
    ]
    return f"{head}{HELP_TITLE}\n{''.join(listed)}{''.join(lines[kept:])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args()
    stale = False
    for path, rendering in ((PAGE, render), (CONFIG, render_help)):
        text = path.read_text()
        rendered = rendering(text)
        if not args.check:
            path.write_text(rendered)
        elif rendered != text:
            diff = difflib.unified_diff(text.splitlines(), rendered.splitlines(), lineterm="")
            print("\n".join(diff))
            stale = True
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
