"""(Integration: trains a model and runs eval several times, too long for the default suite.)
eval's robustness: corrupted copies of the test split (made and cached, or CIFAR-10-C's own
files), extra test folders, the Grad-CAM pictures, and one line for each bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_exp.datasets import load_dataset
from cifar_exp.training.robustness import CIFAR10_CLASSES
from helpers.cli import error_lines, output_in_process, run_in_process
from helpers.events import load_events
from helpers.overrides import TINY_TRAINER
from helpers.runs import trained


def cifar_like_folder(root, classes=CIFAR10_CLASSES, per_class=4):
    """root/{train,test}/<class>/ of random 32x32 PNGs, with CIFAR-10's class names."""
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            pixels = torch.randint(0, 256, (per_class, 32, 32, 3), generator=gen, dtype=torch.uint8)
            for k, image in enumerate(pixels.numpy()):
                Image.fromarray(image).save(root / split / name / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robust")
    data = cifar_like_folder(folder / "data")
    cache = f"dataset.cache_dir={folder / 'cache'}"
    return trained(folder, *TINY_TRAINER, "dataset=imagefolder", f"dataset.root={data}", cache)


def evaluate(run, out, *overrides):
    return output_in_process(
        f"ckpt={run}", f"hydra.run.dir={out}", *overrides, cwd=out.parent, module="cifar_exp.eval"
    )


def test_corruptions_and_an_extra_test_folder_are_scored_cached_and_drawn(run, tmp_path):
    cache, test_folder = tmp_path / "cache", run.parent / "data" / "test"
    args = ["corruptions=[fog,contrast]", "severities=[1,5]", f"cache_dir={cache}"]
    code, printed = evaluate(run, tmp_path / "e1", *args, f"test_folders=[{test_folder}]")
    assert code == 0, printed[-3000:]
    report = json.loads((tmp_path / "e1" / "robustness.json").read_text())
    clean = json.loads((tmp_path / "e1" / "eval.json").read_text())
    assert report["clean"]["acc"] == clean["acc"] and report["images"] == 40
    cells = [report["corruptions"][n][s]["acc"] for n in ("fog", "contrast") for s in ("1", "5")]
    assert report["mean_corruption_acc"] == pytest.approx(np.mean(cells))
    assert report["mean_corruption_error"] == pytest.approx(1 - np.mean(cells))
    assert report["per_severity_acc"].keys() == {"1", "5"}
    # the test split itself, named as an extra test set, scores what the clean split scored
    assert report["test_folders"][str(test_folder)]["acc"] == clean["acc"]
    assert "mean corruption accuracy" in printed and "  contrast " in printed
    assert (tmp_path / "e1" / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    cached = sorted(p.name for p in cache.rglob("*.npy"))
    assert cached == ["contrast-1.npy", "contrast-5.npy", "fog-1.npy", "fog-5.npy"]
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}

    code, printed = evaluate(run, tmp_path / "e2", *args)  # from the cache, the same scores
    assert code == 0, printed[-3000:]
    again = json.loads((tmp_path / "e2" / "robustness.json").read_text())
    assert again["corruptions"] == report["corruptions"]
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == stamps


def test_cifar10c_files_are_read_by_severity(run, tmp_path):
    """Files laid out as CIFAR-10-C's (severity s in rows (s-1) N to s N) holding the clean
    test images at severity 2 and black images elsewhere: severity 2 scores the clean split."""
    test = load_dataset(
        {
            "name": "imagefolder",
            "root": str(run.parent / "data"),
            "num_classes": None,
            "cache_dir": str(tmp_path / "dc"),
        }
    ).test
    clean = test.images.permute(0, 2, 3, 1).numpy()
    blocks = [clean if s == 2 else np.zeros_like(clean) for s in range(1, 6)]
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "fog.npy", np.concatenate(blocks))
    np.save(folder / "labels.npy", np.tile(test.labels.numpy().astype(np.uint8), 5))
    code, printed = evaluate(run, tmp_path / "e", "corruptions=fog", f"cifar10c_dir={folder}")
    assert code == 0, printed[-3000:]
    report = json.loads((tmp_path / "e" / "robustness.json").read_text())
    assert report["corruptions"]["fog"]["2"]["acc"] == report["clean"]["acc"]
    assert report["source"] == str(folder) and report["seed"] is None


def test_eval_draws_grad_cam_maps_of_its_confident_mistakes(run, tmp_path):
    code, printed = evaluate(run, tmp_path / "e", "gradcam=4")
    assert code == 0, printed[-3000:]
    assert (tmp_path / "e" / "gradcam.png").read_bytes()[:4] == b"\x89PNG"
    tags = load_events(tmp_path / "e").Tags()["images"]
    assert {"visual/test_gradcam", "visual/test_misclassified"} <= set(tags)
    code, _ = evaluate(run, tmp_path / "none", "gradcam=0")
    assert code == 0 and not (tmp_path / "none" / "gradcam.png").exists()


def other_classes(tmp_path):
    folder = tmp_path / "other"
    for name in ("airplane", "zebra"):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(folder / name / "0.png")
    return folder


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["corruptions=[fog,fgo]"], "corruptions must be one of all, none, gaussian_noise"),
        (["corruptions=all", "severities=[0,6]"], "severities must be each in 1-5"),
        (["corruption_images=0", "corruptions=all"], "corruption_images must be >= 1 or null"),
        (["cifar10c_dir=/nowhere"], "cifar10c_dir names where CIFAR-10-C's files are; say which"),
        (["corruptions=fog", "cifar10c_dir=/nowhere"], "no labels.npy in /nowhere: cifar10c_dir"),
        (["test_folders=[/nowhere/at/all]"], "no test folder at /nowhere/at/all"),
        ([other_classes], "(missing: ['automobile', 'bird'"),
    ],
)
def test_bad_robustness_inputs_are_one_line(run, tmp_path, capfd, overrides, message):
    overrides = [f"test_folders=[{o(tmp_path)}]" if callable(o) else o for o in overrides]
    out = tmp_path / "e"
    assert (
        run_in_process(
            f"ckpt={run}",
            f"hydra.run.dir={out}",
            *overrides,
            cwd=tmp_path,
            module="cifar_exp.eval",
            full_error=False,
        )
        == 1
    )
    lines = error_lines(capfd)
    assert len(lines) == 1 and message in lines[0], lines
    assert not (out / "robustness.json").exists()
