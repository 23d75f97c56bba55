"""The documentation's build tools, and the API reference its pages list (`::: module`)."""

import importlib.util
import re
import textwrap

import pytest
import yaml

from helpers.paths import REPO

DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "griffe")


def missing_docs_tools() -> list[str]:
    return [name for name in DOCS_TOOLS if importlib.util.find_spec(name) is None]


needs_docs_tools = pytest.mark.skipif(
    bool(missing_docs_tools()),
    reason=f"{', '.join(missing_docs_tools())} not importable: pip install -e '.[docs]'",
)


def api_references() -> list[tuple[str, str, list[str]]]:
    """(page, module, members listed) for every `::: module` directive in docs/."""
    found = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = page.read_text()
        for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, re.MULTILINE):
            options = yaml.safe_load(textwrap.dedent(match.group(2))) or {}
            members = (options.get("options") or {}).get("members") or []
            found.append((page.name, match.group(1), members))
    return found
