import itertools

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cifar_exp.config import validate
from cifar_exp.errors import ConfigError
from helpers.paths import group_options

GROUPS = ["model", "optimizer", "scheduler", "dataset", "augment", "device", "trainer"]


def test_defaults_are_the_seed_setup(compose):
    cfg = compose()
    assert cfg.model.name == "lenet5"
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-3
    assert cfg.scheduler.name == "none"
    assert cfg.dataset.name == "cifar10"
    assert cfg.trainer.batch_size == 32 and cfg.trainer.epochs == 10
    validate(cfg)


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_validates(compose, group):
    for option in group_options(group):
        cfg = compose([f"{group}={option}"])
        validate(cfg)
        OmegaConf.to_container(cfg, resolve=True)


def test_every_option_composes_beside_other_options_of_every_group(compose):
    """Every option composes together with non-default options of all the other groups: the
    k-th composition picks the k-th option of each group (cycling), so each option is seen
    beside some option of every other group. test_every_pair_of_options_composes (slow)
    tries every pair."""
    options = {group: group_options(group) for group in GROUPS}
    for k in range(max(map(len, options.values()))):
        cfg = compose([f"{g}={names[k % len(names)]}" for g, names in options.items()])
        validate(cfg)
        OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.slow
def test_every_pair_of_options_composes(compose):
    """Each option of each group composes with each option of every other group (451
    compositions: minutes)."""
    for g1, g2 in itertools.combinations(GROUPS, 2):
        for o1, o2 in itertools.product(group_options(g1), group_options(g2)):
            cfg = compose([f"{g1}={o1}", f"{g2}={o2}"])
            validate(cfg)


def test_debug_tiny_shrinks_any_choice_and_what_is_typed_after_it_wins(compose):
    tiny = compose(["debug=tiny", "experiment=resnet18_cifar", "model=resnet20"])
    validate(tiny)
    assert (tiny.dataset.name, tiny.dataset.train_size, tiny.dataset.test_size) == (
        "synthetic",
        256,
        128,
    )
    assert (tiny.device.type, tiny.model.name) == ("cpu", "resnet20")
    t = tiny.trainer
    assert (t.epochs, t.batch_size, t.num_threads) == (1, 32, 1)  # over the preset's 200, 128
    assert (t.log_images, t.progress_bar) == (False, False)
    assert tiny.optimizer.name == "sgd"  # what it does not shrink stays the preset's
    assert compose(["debug=tiny", "trainer.epochs=3"]).trainer.epochs == 3


def test_data_root_defaults_to_the_environment_then_data(compose, monkeypatch):
    monkeypatch.delenv("CIFAR_EXP_DATA", raising=False)
    assert compose(["dataset=imagefolder"]).dataset.root == "data"
    monkeypatch.setenv("CIFAR_EXP_DATA", "/srv/images")
    assert compose(["dataset=cifar100"]).dataset.root == "/srv/images"
    assert compose(["dataset=imagefolder", "dataset.root=mine"]).dataset.root == "mine"


def test_model_num_classes_follows_dataset(compose):
    cfg = compose(["dataset=synthetic", "dataset.num_classes=4", "model=resnet20"])
    assert cfg.model.num_classes == 4


@pytest.mark.parametrize(
    "override",
    [
        "trainer.epoch=5",
        "model=resnet99",
        "optimizer.lrr=0.1",
        "trainer.epochs=abc",
        "model.widht=3",
    ],
)
def test_typos_and_wrong_types_fail_at_composition(compose, override):
    with pytest.raises(ConfigCompositionException):
        compose([override])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.batch_size=0"], "trainer.batch_size must be >= 1, got 0"),
        (["trainer.epochs=-1"], "trainer.epochs must be >= 0, got -1"),
        (["optimizer.lr=0"], "optimizer.lr must be > 0, got 0.0"),
        (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum must be in [0, 1)"),
        (
            ["optimizer=sgd", "optimizer.momentum=0", "optimizer.nesterov=true"],
            "nesterov=true needs",
        ),
        (["scheduler=step", "scheduler.gamma=2"], "scheduler.gamma must be in (0, 1]"),
        (["scheduler=cosine", "scheduler.warmup_epochs=-1"], "warmup_epochs must be >= 0"),
        (["device.type=tpu"], "device.type must be one of auto, cpu, cuda, got 'tpu'"),
        (["trainer.precision=fp8"], "trainer.precision must be one of"),
        (["trainer.limit_train_batches=0"], "trainer.limit_train_batches must be >= 1 or null"),
        (["trainer.histogram_every=-1"], "trainer.histogram_every must be >= 0"),
        (["dataset=synthetic", "dataset.train_size=0"], "dataset.train_size must be >= 1"),
        (["dataset.val_size=-1"], "dataset.val_size must be >= 0, got -1"),
        (["dataset=imagefolder", "dataset.max_per_class=0"], "dataset.max_per_class must be >= 1"),
        (["augment=standard", "augment.crop_padding=-4"], "augment.crop_padding must be >= 0"),
        (["augment.std=[0.2,0,0.2]"], "augment.std must be three numbers > 0 or null"),
    ],
)
def test_invalid_values_get_one_clear_message(compose, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value)
