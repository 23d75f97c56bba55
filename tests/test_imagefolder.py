"""The imagefolder source: layout checks, any image format and size, bad files, the cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_exp.datasets import load_dataset
from cifar_exp.datasets.imagefolder import decode_chunks
from cifar_exp.errors import UserError
from helpers.cli import output_in_process
from helpers.images import make_folder
from helpers.overrides import TINY_TRAINER


def options(root, cache_dir, **extra):
    return {"name": "imagefolder", "root": str(root), "cache_dir": str(cache_dir), **extra}


def test_any_format_and_size_becomes_uint8_at_image_size(tmp_path):
    root = make_folder(tmp_path / "images")
    bundle = load_dataset(options(root, tmp_path / "cache", image_size=8))
    assert bundle.classes == ["blue", "green", "red"]
    assert bundle.train.images.shape == (12, 3, 8, 8) and bundle.train.images.dtype == torch.uint8
    assert bundle.test.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    red = bundle.train.images[bundle.train.labels == 2].float()
    rgb = red[0::3].mean(dim=(0, 2, 3))  # the RGB files of class "red"
    assert rgb[0] > 200 and rgb[1] < 60 and rgb[2] < 60
    gray = bundle.train.images[bundle.train.labels == 2][2]  # the grayscale BMP: R == G == B
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert bundle.val is None


def test_cache_is_used_until_the_folder_changes(tmp_path, caplog):
    caplog.set_level("INFO")
    root = make_folder(tmp_path / "images")
    opts = options(root, tmp_path / "cache")
    first = load_dataset(opts)
    assert "decoded 24 images" in caplog.text
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    caplog.clear()
    second = load_dataset(opts)
    assert "from the cache" in caplog.text and "decoded" not in caplog.text
    assert torch.equal(first.train.images, second.train.images)

    Image.new("RGB", (32, 32), (0, 0, 0)).save(root / "train" / "red" / "new.png")
    caplog.clear()
    third = load_dataset(opts)
    assert "is stale" in caplog.text and "decoded 25 images" in caplog.text
    assert len(third.train) == 13


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    root = make_folder(tmp_path / "images")
    opts = options(root, tmp_path / "cache")
    first = load_dataset(opts)
    (cache_file,) = (tmp_path / "cache").glob("*.pt")
    cache_file.write_bytes(b"not a torch file")
    again = load_dataset(opts)
    assert "is unreadable" in caplog.text
    assert torch.equal(first.train.images, again.train.images)
    assert cache_file.stat().st_size > 1000  # rewritten


def test_val_folder_becomes_the_val_split(tmp_path):
    root = make_folder(tmp_path / "images", splits=("train", "val", "test"))
    bundle = load_dataset(options(root, tmp_path / "cache"))
    assert len(bundle.val) == 12 and bundle.val.images.shape[1:] == (3, 32, 32)
    with pytest.raises(UserError, match="already has a val split"):
        load_dataset(options(root, tmp_path / "cache", val_size=3))


def test_max_per_class_keeps_the_first_files(tmp_path):
    root = make_folder(tmp_path / "images", per_class=5)
    bundle = load_dataset(options(root, tmp_path / "cache", max_per_class=2))
    assert torch.bincount(bundle.train.labels).tolist() == [2, 2, 2]


def test_worker_processes_decode_the_same_pixels(tmp_path):
    root = make_folder(tmp_path / "images", per_class=3)
    paths = sorted(str(p) for p in root.rglob("*.*"))
    inline = list(decode_chunks(paths, 16, num_workers=0))
    # Enough files to pass the threshold below which decoding stays in this process.
    pooled = list(decode_chunks(paths * 200, 16, num_workers=2))
    images = np.concatenate([chunk for chunk, _ in pooled])
    assert np.array_equal(images[: len(paths)], inline[0][0])
    assert all(not bad for _, bad in pooled)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: None, "no image folder at {root}"),
        (lambda root: (root / "train").mkdir(parents=True), "has no test/ folder"),
        (
            lambda root: (
                make_folder(root) and (root / "test" / "red").rename(root / "test" / "pink")
            ),
            "have different class folders (only in train/: ['red']; only in test/: ['pink'])",
        ),
        (
            lambda root: make_folder(root) and (root / "train" / "purple").mkdir(),
            "class folder {root}/train/purple is empty",
        ),
    ],
    ids=["missing-root", "missing-test", "class-sets-differ", "empty-class"],
)
def test_bad_layouts_get_one_clear_message(tmp_path, damage, message):
    root = tmp_path / "images"
    damage(root)
    with pytest.raises(UserError) as err:
        load_dataset(options(root, tmp_path / "cache"))
    assert message.format(root=root) in str(err.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "content", [b"just some notes\n", "truncated-jpeg"], ids=["text", "truncated"]
)
def test_unreadable_file_is_named_or_skipped_and_counted(tmp_path, content, caplog):
    root = make_folder(tmp_path / "images")
    bad = root / "train" / "green" / "zzz.jpg"
    if content == "truncated-jpeg":
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[:300])
    else:
        bad.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_dataset(options(root, tmp_path / "cache"))
    assert f"cannot read {bad} as an image" in str(err.value)
    assert "dataset.skip_bad_files=true" in str(err.value)

    bundle = load_dataset(options(root, tmp_path / "cache", skip_bad_files=True))
    assert len(bundle.train) == 12 and bundle.skipped == ["train/green/zzz.jpg"]
    assert "skipped 1 unreadable files" in caplog.text


def test_class_with_only_bad_files_is_an_error_even_when_skipping(tmp_path):
    root = make_folder(tmp_path / "images")
    for path in (root / "test" / "blue").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(UserError, match="test/blue has no readable images"):
        load_dataset(options(root, tmp_path / "cache", skip_bad_files=True))


def test_cli_unreadable_file_exits_nonzero_without_traceback(tmp_path):
    root = make_folder(tmp_path / "images")
    (root / "test" / "red" / "bad.png").write_bytes(b"\x89PNG broken")
    code, output = output_in_process(
        *TINY_TRAINER,
        "dataset=imagefolder",
        f"dataset.root={root}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    output = output
    assert code == 1
    assert f"cannot read {root / 'test' / 'red' / 'bad.png'} as an image" in output
    assert "Traceback" not in output


def test_cli_num_classes_follows_the_folder_with_val_split_and_augmentation(tmp_path):
    make_folder(tmp_path / "images", per_class=8)
    run_dir = tmp_path / "run"
    code, output = output_in_process(
        *TINY_TRAINER,
        "dataset=imagefolder",
        "dataset.root=images",  # relative to the launch folder
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.val_size=6",
        "augment=standard",
        "augment.normalize=true",
        "model=resnet20",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert code == 0, output[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val_acc", "val_loss", "best_val_acc", "test_acc"} <= set(metrics["final"])
    assert "val_acc" in metrics["epochs"][0] and "test_acc" not in metrics["epochs"][0]
    log = (run_dir / "run.log").read_text()
    assert "18 train / 6 val / 24 test images, 3 classes" in log
