"""Write into each option file the values it sets: its registered schema's defaults.

    python scripts/docs/option_values.py            # rewrite the option files
    python scripts/docs/option_values.py --check    # exit 1 when one differs from its schema

An option file of the registry groups (src/cifar_exp/conf/<group>/<name>.yaml for model/,
optimizer/, scheduler/ and dataset/) names its schema in its defaults list, and the values
come from that schema: the options dataclass the name is registered with. So that a reader of
the file sees them, this script appends to it, below its hand-written part and a marker
comment, every key of the schema that the hand-written part does not set, with its default
and the comment its field has in the source (beside it, or above it). The composed values do
not change: the schema's defaults, then the hand-written keys over them. A field without a
default (`name`, which the registry fills in) is left out.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
import textwrap
import tokenize
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

import cifar_exp
from cifar_exp.components.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.datasets import DATASETS
from cifar_exp.models import MODELS

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "src" / "cifar_exp" / "conf"
PACKAGE = Path(cifar_exp.__file__).parent
REGISTRIES = (MODELS, OPTIMIZERS, SCHEDULERS, DATASETS)
# The first words of the marker: the hand-written part of a file ends above its line.
MARKER = "# The values this option sets:"


def option_files() -> list[tuple[Path, type]]:
    """Every option file of the registry groups with its schema; SystemExit where a group's
    files and its registered names differ."""
    found = []
    for registry in REGISTRIES:
        group = registry.group
        files = sorted((CONF / group).glob("*.yaml"))
        if [path.stem for path in files] != registry.names():
            raise SystemExit(
                f"conf/{group}/ holds {', '.join(p.stem for p in files)} but the registered "
                f"{group}s are {', '.join(registry.names())}: one file per registered name"
            )
        found += [(path, registry.schema(path.stem)) for path in files]
    return found


def hand_written(text: str) -> str:
    """The part of an option file above the marker (all of it where there is none)."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.startswith(MARKER)), len(lines))
    return "".join(lines[:end])


def hand_set_keys(text: str) -> dict[str, Any]:
    """The keys the hand-written part of an option file sets, as Hydra reads them (unresolved)."""
    node = OmegaConf.to_container(OmegaConf.create(hand_written(text)), resolve=False)
    return {key: value for key, value in node.items() if key != "defaults"}


def declaring_classes(schema: type, name: str) -> list[type]:
    """The classes of `schema`'s hierarchy that declare the field `name`, most derived first."""
    return [cls for cls in schema.__mro__ if name in inspect.get_annotations(cls)]


def field_comments(cls: type) -> dict[str, tuple[list[str], str]]:
    """Per field that `cls` declares: the comment lines right above it, and the comment at
    the end of its line ("" where there is none)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {
        token.start[0]: token.string.removeprefix("#").strip()
        for token in tokenize.generate_tokens(iter(source.splitlines(keepends=True)).__next__)
        if token.type == tokenize.COMMENT
    }
    (body,) = ast.parse(source).body
    found = {}
    for statement in body.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        above = []
        line = statement.lineno - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        found[statement.target.id] = (above, comments.get(statement.end_lineno, ""))
    return found


def field_comment(schema: type, name: str) -> tuple[list[str], str]:
    """The comment of the field `name`: its own declaration's, else the nearest base's that
    has one (a subclass that changes a default keeps the key's meaning)."""
    for cls in declaring_classes(schema, name):
        above, beside = field_comments(cls).get(name, ([], ""))
        if above or beside:
            return above, beside
    return [], ""


def yaml_value(value: Any) -> str:
    """`value` as YAML reads it back: null, true, floats that stay floats (1.0e-08), strings
    quoted where they would read as something else, lists and mappings in flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def values_part(schema: type, hand_set: dict[str, Any]) -> str:
    """The marker and the schema's defaults of the keys `hand_set` leaves out ("" if none)."""
    node = OmegaConf.structured(schema)
    defaults = OmegaConf.to_container(node, resolve=False)
    lines, sources = [], []
    for field in dataclasses.fields(schema):
        if field.name in hand_set or OmegaConf.is_missing(node, field.name):
            continue
        source = Path(inspect.getsourcefile(declaring_classes(schema, field.name)[0]))
        if source not in sources:
            sources.append(source)
        above, beside = field_comment(schema, field.name)
        lines += [f"# {comment}" for comment in above]
        line = f"{field.name}: {yaml_value(defaults[field.name])}"
        lines.append(f"{line}  # {beside}" if beside else line)
    if not lines:
        return ""
    shown = ", ".join(str(source.relative_to(PACKAGE)) for source in sources)
    marker = (
        f"{MARKER.removeprefix('# ')} its schema's defaults ({shown}), written by "
        "scripts/docs/option_values.py; change a default there, then run that script."
    )
    marker = textwrap.fill(marker, 96, initial_indent="# ", subsequent_indent="# ")
    return "\n".join([marker, *lines]) + "\n"


def rendered(path: Path, schema: type) -> str:
    """The option file at `path` as this script writes it."""
    text = path.read_text()
    hand = hand_written(text).rstrip("\n") + "\n"
    return hand + values_part(schema, hand_set_keys(text))


def stale_files() -> list[Path]:
    """The option files that differ from what this script writes."""
    return [path for path, schema in option_files() if path.read_text() != rendered(path, schema)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if an option file is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            names = ", ".join(str(path.relative_to(CONF)) for path in stale)
            sys.exit(f"{names}: stale values; run python scripts/docs/option_values.py")
        return
    for path, schema in option_files():
        path.write_text(rendered(path, schema))


if __name__ == "__main__":
    main()
