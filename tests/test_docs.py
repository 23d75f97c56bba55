"""The README and the documentation site: short, linked, built, and current with the code.

The site is built with `mkdocs build --strict` and link validation (mkdocs.yml), so a broken
link or anchor, or an API reference that no longer resolves, fails here. It needs the docs
extra (`pip install -e ".[docs]"`, part of `[dev]`); without it the build tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "griffe")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def missing_docs_tools() -> list[str]:
    return [name for name in DOCS_TOOLS if importlib.util.find_spec(name) is None]


needs_docs_tools = pytest.mark.skipif(
    bool(missing_docs_tools()),
    reason=f"{', '.join(missing_docs_tools())} not importable: pip install -e '.[docs]'",
)


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@needs_docs_tools
def test_site_builds_strictly_with_its_pages_and_api_reference(tmp_path):
    proc = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-5000:]
    site = tmp_path / "site"
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    for entry in config["nav"]:
        (page,) = entry.values()
        built = site / ("index.html" if page == "index.md" else f"{Path(page).stem}/index.html")
        assert built.is_file(), f"{page} was not built"
    for page, module, members in api_references():
        html = (site / Path(page).stem / "index.html").read_text()
        names = [module, *(f"{module}.{member}" for member in members)]
        missing = [name for name in names if f'id="{name}"' not in html]
        assert not missing, f"the built {page} lacks {', '.join(missing)}"
    shots = ["dashboard_scalars.png", "dashboard_hparams.png", "dashboard_images.png"]
    shots += [
        f"first_sight_{tab}{when}.png" for tab in ("hparams", "scalars") for when in ("_before", "")
    ]
    for png in shots:
        assert (site / png).is_file()
        assert png in (site / "outputs" / "index.html").read_text()


@needs_docs_tools
def test_the_link_check_turns_a_broken_link_or_anchor_into_an_error(tmp_path):
    """The site's own validation settings, on two pages with a broken link and anchor."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[gone](missing.md) and [there](other.md#nowhere)\n")
    (docs / "other.md").write_text("# Other\n\n## Somewhere\n")
    validation = yaml.safe_load((REPO / "mkdocs.yml").read_text())["validation"]
    config = tmp_path / "mkdocs.yml"
    config.write_text(yaml.safe_dump({"site_name": "check", "validation": validation}))
    proc = mkdocs_build(config, tmp_path / "site")
    assert proc.returncode != 0
    assert "missing.md" in proc.stderr and "nowhere" in proc.stderr, proc.stderr


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
        "render_benchmarks", REPO / "scripts" / "render_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_committed_benchmarks_page_is_what_the_results_render():
    rendered = load_renderer().render()
    committed = (REPO / "docs" / "benchmarks.md").read_text()
    assert committed == rendered, (
        "docs/benchmarks.md differs from docs/benchmarks/*.json: "
        "run python scripts/render_benchmarks.py"
    )


def test_every_benchmark_table_names_its_command_machine_and_date():
    renderer = load_renderer()
    for path in sorted((REPO / "docs" / "benchmarks").glob("*.json")):
        result = json.loads(path.read_text())
        assert result["cpu"]["model"] and result["cpu"]["flags"] and result["date"], path.name
        commands = [result["command"]] if "command" in result else []
        commands += [run["command"] for run in result.get("runs", [])]
        assert commands, f"{path.name} records no command"
        section = renderer.provenance(result)
        assert result["cpu"]["model"] in section and result["date"] in section


def test_a_bench_script_json_renders_with_its_provenance(tmp_path):
    """What bench_cpu.py writes is what the renderer reads (a dry run: tiny sizes)."""
    results = tmp_path / "results"
    results.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_cpu.py"),
            *("--dry-run", "--models", "lenet5", "--threads", "1"),
            *("--json", str(results / "cpu-dry.json")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = load_renderer().render(results)
    assert "bench_cpu.py --dry-run --models lenet5" in page
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
    from cifar_exp.rundir import setup_hydra

    setup_hydra()
    page = (REPO / "docs" / "checkpoints.md").read_text()
    start = page.index("Overrides may change only what leaves the experiment alone")
    paragraph = page[start : page.index("Any other change is", start)]
    listed = {key for key in re.findall(r"`([a-z_]+\.[a-z_.]+)`", paragraph)}
    # `expected` documents a preset (a resume may restate it); the page says so elsewhere.
    assert listed == set(config.resumable_keys()) - {"expected"}
