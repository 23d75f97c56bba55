"""The README and the documentation site: short, linked, built, and current with the code.

The site is built with `mkdocs build --strict` and link validation (mkdocs.yml), so a broken
link or anchor, or an API reference that no longer resolves, fails here. It needs the docs
extra (`pip install -e ".[docs]"`, part of `[dev]`); without it the build tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from helpers.docs import api_references, needs_docs_tools

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@needs_docs_tools
def test_every_object_the_api_reference_lists_exists():
    """mkdocstrings skips a listed member that is gone without a word: this test does not."""
    import griffe

    references = api_references()
    assert references, "docs/ has no API reference"
    for page, module, members in references:
        loaded = griffe.load(module, search_paths=[str(REPO / "src")])
        missing = [member for member in members if member not in loaded.members]
        assert not missing, f"{page}: {module} has no {', '.join(missing)}"


def load_renderer():
    spec = importlib.util.spec_from_file_location(
        "render_benchmarks", REPO / "scripts" / "docs" / "render_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_benchmarks_page_is_what_the_results_render():
    rendered = load_renderer().render()
    committed = (REPO / "docs" / "benchmarks.md").read_text()
    assert committed == rendered, (
        "docs/benchmarks.md differs from docs/benchmarks/*.json: "
        "run python scripts/docs/render_benchmarks.py"
    )


def test_every_benchmark_table_names_its_command_machine_and_date():
    renderer = load_renderer()
    for path in sorted((REPO / "docs" / "benchmarks").glob("*.json")):
        result = json.loads(path.read_text())
        assert result["cpu"]["model"] and result["cpu"]["flags"] and result["date"], path.name
        commands = [result["command"]] if "command" in result else []
        commands += [run["command"] for run in result.get("runs", [])]
        assert commands, f"{path.name} records no command"
        section = renderer.page.provenance(result)
        assert result["cpu"]["model"] in section and result["date"] in section


def test_a_bench_script_json_renders_with_its_provenance(tmp_path, monkeypatch):
    """What scripts/bench/cpu.py writes is what the renderer reads (a dry run: tiny sizes,
    its main() in this process)."""
    renderer = load_renderer()
    results = tmp_path / "results"
    results.mkdir()
    script = ["scripts/bench/cpu.py", "--dry-run", "--models", "lenet5", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", [*script, "--json", str(results / "cpu-dry.json")])
    threads = torch.get_num_threads()
    try:
        renderer.cpu.main()
    finally:
        torch.set_num_threads(threads)
    page = renderer.render(results)
    assert "scripts/bench/cpu.py --dry-run --models lenet5" in page
    assert "**Dry run:**" in page and "**CPU flags** (AVX, AMX, bf16):" in page
    assert "| `lenet5` |" in page and "Fastest per model: `lenet5`" in page


def test_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def heading_slugs(markdown: str) -> set[str]:
    """The anchors GitHub and MkDocs give a file's headings (lower case, punctuation dropped)."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.MULTILINE):
        text = re.sub(r"[`*]", "", heading).strip().lower()
        slugs.add(re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text)))
    return slugs


def test_every_relative_link_in_the_readme_resolves():
    text = README.read_text()
    links = [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]
    assert links, "README.md links nowhere"
    for target in links:
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        assert file.is_relative_to(REPO) and file.exists(), f"README.md links to {target}"
        if anchor and file.suffix == ".md":
            assert anchor in heading_slugs(file.read_text()), f"README.md: no #{anchor} in {path}"


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("a date", r"\b20\d\d-\d\d-\d\d\b"),
        ("a throughput", r"\d\s*(images|img)/s"),
        ("a duration", r"\d\s*(s|sec|seconds|min|minutes|ms|h|hours)\b"),
        ("a CPU flag", r"\b(avx\w*|amx\w*)\b"),
        ("a median", r"\bmedians?\b"),
    ],
)
def test_readme_holds_no_dated_or_machine_specific_figure(what, pattern):
    """Such figures live in docs/benchmarks.md with their machine and date, not here."""
    found = re.search(pattern, README.read_text(), re.IGNORECASE)
    assert found is None, f"README.md holds {what}: {found.group(0)!r}; put it in docs/"


def test_the_resume_page_lists_exactly_the_keys_a_resume_may_change():
    """docs/checkpoints.md names, in one paragraph, the overrides a resume accepts: the keys
    registered as resumable (config.resumable_keys), no more and no fewer."""
    from cifar_exp import config
    from cifar_exp.hydra_setup import setup_hydra

    setup_hydra()
    page = (REPO / "docs" / "checkpoints.md").read_text()
    start = page.index("Overrides may change only what leaves the experiment alone")
    paragraph = page[start : page.index("Any other change is", start)]
    listed = {key for key in re.findall(r"`([a-z_]+\.[a-z_.]+)`", paragraph)}
    # `expected` documents a preset (a resume may restate it); the page says so elsewhere.
    assert listed == set(config.resumable_keys()) - {"expected"}
