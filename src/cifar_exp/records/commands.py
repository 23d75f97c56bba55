"""Commands printed for a user to copy and run: `python -m cifar_exp.<entrypoint> ...`, each
argument quoted for the shell (shlex), each override's value quoted for Hydra's override
grammar when it would not read back as the same string (a non-ASCII letter, a space at either
end, a comma, '=', brackets, a number, null, an interpolation ...).

A folder typed as `hydra.run.dir='runs/r sp ace'` comes back as
`python -m cifar_exp.run 'resume=runs/r sp ace'`, and `/data/dír` as `'resume="/data/dír"'`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

_parser: OverridesParser | None = None


def _reads_back(text: str, value: str) -> bool:
    """Whether Hydra parses `key=<text>` to the string `value` itself."""
    global _parser
    _parser = _parser or OverridesParser.create()
    try:
        parsed = _parser.parse_override(f"key={text}").value()
    except HydraException:  # not an override Hydra can read
        return False
    return parsed == value


def _quoted(value: str, quote: str) -> str:
    """`value` inside Hydra quotes: the quote itself and the backslashes before a quote or
    the end escaped, `${` escaped so that OmegaConf does not read an interpolation."""

    def escape(match: re.Match[str]) -> str:
        slashes, end = match.group(1), match.group(2)
        return slashes * 2 + ("\\" + end if end else "")

    body = re.sub(rf"(\\*)({quote}|$)", escape, value).replace("${", "\\${")
    return f"{quote}{body}{quote}"


def hydra_value(value: str) -> str:
    """`value` as an override value Hydra reads back as that string."""
    if "${" not in value and _reads_back(value, value):
        return value
    quote = "'" if '"' in value and "'" not in value else '"'
    return _quoted(value, quote)


def override(key: str, value: str | Path) -> str:
    """`key=value`, the value quoted for Hydra where it needs it."""
    return f"{key}={hydra_value(str(value))}"


def command(module: str, args: Iterable[str]) -> str:
    """`python -m <module> <args>`, every argument quoted for the shell."""
    return shlex.join(["python", "-m", module, *args])


def run_command(args: Iterable[str]) -> str:
    return command("cifar_exp.run", args)
