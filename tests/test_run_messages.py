"""What a run says about itself in its log: progress without a bar, and how much of a split
an accuracy covers when a limit or dataset.max_per_class cut it."""

import json
import re

import numpy as np
from PIL import Image

from helpers.cli import run_in_process
from helpers.outputs import job_dirs
from helpers.overrides import TINY, TINY_TRAINER

# 64 batches of 32: long enough for several progress lines at a 0.02 s interval.
LONGER = [*TINY, "dataset.train_size=2048", "trainer.log_every_n_steps=1000"]


def run_log(tmp_path, *overrides) -> str:
    tmp_path.mkdir(exist_ok=True)
    run_dir = tmp_path / "run"
    assert run_in_process(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    return (run_dir / "run.log").read_text()


def test_without_a_bar_the_log_gets_a_progress_line_every_interval(tmp_path):
    text = run_log(tmp_path, *LONGER, "trainer.progress_bar=true", "trainer.log_interval_s=0.02")
    assert "no progress bar (stdout is not a terminal): a progress line every 0.02s" in text
    lines = re.findall(
        r"epoch 1/1  batch (\d+)/64  \d+ img/s  elapsed \d+m\d\ds  ETA \d+m\d\ds", text
    )
    assert len(lines) >= 2
    batches = [int(b) for b in lines]
    assert batches == sorted(batches) and batches[-1] <= 64


def test_the_interval_is_respected_and_zero_turns_the_lines_off(tmp_path):
    text = run_log(tmp_path, *LONGER, "trainer.log_interval_s=600")
    assert "(trainer.progress_bar=false): a progress line every 600s" in text
    assert not re.search(r"batch \d+/64", text)
    text = run_log(tmp_path / "off", *LONGER, "trainer.log_interval_s=0")
    assert "a progress line never (trainer.log_interval_s)" in text
    assert not re.search(r"batch \d+/64", text)


def test_a_negative_interval_is_refused(tmp_path):
    assert run_in_process(*TINY, "trainer.log_interval_s=-1", cwd=tmp_path) == 1


LIMITED = [*TINY, "trainer.eval_batch_size=32", "trainer.limit_eval_batches=1"]


def test_a_limited_evaluation_says_how_many_images_it_scored(tmp_path):
    text = run_log(tmp_path, *LIMITED)
    assert re.search(r"final test accuracy [\d.]+ on 32 of 128 test images, all 10 classes", text)
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert (final["test_images"], final["test_images_total"]) == (32, 128)
    assert (final["test_classes"], final["test_classes_total"]) == (10, 10)


def test_a_whole_evaluation_says_nothing_more(tmp_path):
    text = run_log(tmp_path, *TINY)
    assert re.search(r"final test accuracy [\d.]+ \(best", text)
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert "test_images" not in final


def test_a_limited_validation_and_test_are_both_stated_in_the_sweep_summary(tmp_path):
    sweep = tmp_path / "sweep"
    code = run_in_process(
        "-m",
        *LIMITED,
        "dataset.val_size=64",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert code == 0
    for job in job_dirs(sweep):
        final = json.loads((job / "metrics.json").read_text())["final"]
        assert (final["val_images"], final["val_images_total"]) == (32, 64)
    summary = (sweep / "summary.md").read_text()
    assert "on 32 of 128 test images, all 10 classes (trainer.limit_eval_batches)" in summary
    assert "on 32 of 64 val images, all 10 classes (trainer.limit_eval_batches)" in summary


def test_max_per_class_says_it_cuts_the_test_split_too(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    text = run_log(
        tmp_path,
        *TINY_TRAINER,
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'images'}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.max_per_class=4",
        "trainer.batch_size=4",
    )
    assert "8 train / 0 val / 8 test images" in text
    assert "dataset.max_per_class=4 keeps the first 4 images of each class in every split" in text


def test_an_evaluation_and_a_decoding_log_progress_lines_where_no_bar_shows(caplog, tmp_path):
    """The phases that were silent for minutes (eval's 10,000 images, lr_find's steps, the
    first decoding of an image folder) say where they are; 0 s means a line every step."""
    import torch

    from cifar_exp.datasets.base import Split
    from cifar_exp.datasets.batches import BatchLoader
    from cifar_exp.datasets.imagefolder import decode_splits, scan
    from cifar_exp.training.engine import evaluate
    from helpers.images import make_folder

    split = Split(torch.zeros(96, 3, 8, 8, dtype=torch.uint8), torch.zeros(96, dtype=torch.int64))
    loader = BatchLoader(split, 32, torch.device("cpu"))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    with caplog.at_level("INFO", logger="cifar_exp"):
        evaluate(model, loader, progress_s=1e-9)
        root = make_folder(tmp_path / "images")
        classes, listing, _ = scan(root, None)
        decode_splits(root, classes, listing, 8, False, 0, interval=1e-9)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(",")[0] for line in lines if line.startswith("evaluation")] == [
        "evaluation: batch 1/3 (33%)",
        "evaluation: batch 2/3 (67%)",
        "evaluation: batch 3/3 (100%)",
    ]
    assert any(line.startswith("decoding images 12/24 (50%)") for line in lines), lines
