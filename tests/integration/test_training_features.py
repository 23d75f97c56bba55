"""Training options of the fast recipes, on the real Trainer built from the real config."""

import pytest

from cifar_exp.training.build import build_trainer
from helpers.paths import CIFAR10_JPEG

ACCURACY_FLOOR = 0.30  # the short speedrun below reached 42.2% on the development machine


def linked_subset(root, into, per_class):
    """An image folder of links to the first per_class[split] files of each class of root."""
    for split, count in per_class.items():
        for folder in sorted((root / split).iterdir()):
            (into / split / folder.name).mkdir(parents=True)
            for file in sorted(folder.iterdir())[:count]:
                (into / split / folder.name / file.name).symlink_to(file)
    return into


@pytest.mark.skipif(not CIFAR10_JPEG.is_dir(), reason=f"no CIFAR-10 JPEG folder at {CIFAR10_JPEG}")
def test_a_short_speedrun_on_real_images_beats_its_floor(compose, tmp_path):
    """speedrun_cpu's recipe, narrowed (widths 16/32/32) and shortened (4 epochs over 5,000
    real training images, scored on 1,000 test images): it must learn, not just run."""
    root = linked_subset(CIFAR10_JPEG, tmp_path / "images", {"train": 500, "test": 100})
    cfg = compose(
        [
            "experiment=speedrun_cpu",
            "dataset=imagefolder",
            f"dataset.root={root}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "model.widths=[16,32,32]",
            "trainer.epochs=4",
            "trainer.batch_size=500",
            "trainer.progress_bar=false",
        ]
    )
    final = build_trainer(cfg, tmp_path / "run")[0].fit()
    assert final["test_acc"] > ACCURACY_FLOOR, final
