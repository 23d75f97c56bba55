"""The TensorBoard page itself: a real server over two runs, read over HTTP and in Chromium."""

import importlib.util
import shutil
import urllib.parse

import pytest
from PIL import Image

from cifar_exp.tracking.pictures import BATCH_TAG, MISCLASSIFIED_TAG, PER_CLASS_TAG, confusion_tag
from helpers.cli import run_cli
from helpers.overrides import TINY
from helpers.paths import REPO

spec = importlib.util.spec_from_file_location(
    "dashboard_screenshots", REPO / "scripts" / "docs" / "dashboard_screenshots.py"
)
screenshots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screenshots)

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not on PATH; install it (Debian/Ubuntu: apt-get install chromium) "
    "to run this test",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two runs, the second without pictures; yields (url, {folder name: run name})."""
    logs = tmp_path_factory.mktemp("logs")
    for name, switch in (("pictures", "true"), ("no_pictures", "false")):
        proc = run_cli(
            *TINY, f"trainer.log_images={switch}", f"hydra.run.dir={logs / name}", cwd=logs
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    with screenshots.tensorboard(logs) as url:
        runs = screenshots.get_json(f"{url}/data/runs")
        yield (
            url,
            {
                name: next(r for r in runs if r.startswith(name + "/") or r == name)
                for name in ("pictures", "no_pictures")
            },
        )


def test_the_images_plugin_serves_each_picture_at_its_steps(server):
    url, runs = server
    tags = screenshots.get_json(f"{url}/data/plugin/images/tags")
    assert runs["no_pictures"] not in tags  # the switch: no images at all
    expected = {
        BATCH_TAG: [0],
        confusion_tag("test"): [1],
        PER_CLASS_TAG: [1],
        MISCLASSIFIED_TAG: [1],
    }
    assert set(tags[runs["pictures"]]) == set(expected)
    for tag, steps in expected.items():
        query = urllib.parse.urlencode({"run": runs["pictures"], "tag": tag, "sample": 0})
        served = screenshots.get_json(f"{url}/data/plugin/images/images?{query}")
        assert [image["step"] for image in served] == steps, tag


@needs_chromium
def test_the_page_renders_in_headless_chromium(server, tmp_path):
    url, runs = server
    dom = screenshots.dump_dom(f"{url}/#timeseries", tmp_path / "profile")
    for name in runs.values():
        assert name in dom, f"the run list does not show {name}"
    # The Images tab draws inside shadow roots, which --dump-dom leaves out: look at it.
    shot = tmp_path / "images.png"
    screenshots.screenshot(f"{url}/#images", shot, tmp_path / "profile", window=(1000, 800))
    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 800)
    # A blank or half-loaded page has a handful of colours; the header, the text and the
    # pictures (the confusion matrix's blues, the photos) give hundreds.
    assert len(image.getcolors(maxcolors=1_000_000)) > 200
