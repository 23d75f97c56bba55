"""The README and the documentation site: short, linked, built, and current with the code.

The site is built with `mkdocs build --strict` and link validation (mkdocs.yml), so a broken
link or anchor, or an API reference that no longer resolves, fails here. It needs the docs
extra (`pip install -e ".[docs]"`, part of `[dev]`); without it the build tests skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.docs import api_references, needs_docs_tools
from helpers.paths import REPO


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
