import itertools
import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cifar_exp.config import check_effects, validate
from cifar_exp.errors import ConfigError
from helpers.cli import output_in_process
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
        check_effects(cfg)  # no option sets a key that does nothing
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


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["trainer.early_stopping.patience=1"],
            "trainer.early_stopping.patience=1 has no effect while "
            "trainer.early_stopping.monitor is null; set it to one of val/acc",
        ),
        (["trainer.compile_mode=max-autotune"], "add trainer.compile=true, or drop"),
        (["trainer.ema_every=5"], "has no effect while trainer.ema_decay=0"),
        (["augment.flip_mode=alternate"], "augment.flip_mode=alternate has no effect while"),
        (["augment.magnitude=5"], "while augment.policy is not randaugment"),
        (["augment.mix_prob=0.5"], "neither MixUp nor CutMix is on"),
        (["augment.mixup_alpha=0.2", "augment.switch_prob=0.3"], "not both on"),
        (["augment.mean=[0.5,0.5,0.5]"], "while augment.normalize=false"),
        (["dataset.split_seed=3"], "neither dataset.val_size nor trainer.limit_eval_batches"),
    ],
)
def test_a_key_that_would_do_nothing_is_one_line(compose, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_effects(compose(overrides))
    # The key that turns it on makes the same value act.
    turned_on = {
        "trainer.early_stopping.patience=1": ["trainer.early_stopping.monitor=val/acc"],
        "trainer.compile_mode=max-autotune": ["trainer.compile=true"],
        "trainer.ema_every=5": ["trainer.ema_decay=0.99"],
        "augment.flip_mode=alternate": ["augment.flip=true"],
        "augment.magnitude=5": ["augment.policy=randaugment"],
        "augment.mix_prob=0.5": ["augment.cutmix_alpha=1.0"],
        "augment.switch_prob=0.3": ["augment.cutmix_alpha=1.0"],
        "augment.mean=[0.5,0.5,0.5]": ["augment.normalize=true"],
        "dataset.split_seed=3": ["dataset.val_size=64"],
    }[overrides[-1]]
    check_effects(compose([*overrides, *turned_on]))


def test_a_key_added_with_plus_that_the_config_lacks_is_refused(compose, tmp_path):
    with pytest.raises(ConfigError, match="output_dir is not a key of cifar-exp's config"):
        validate(compose(["+output_dir=/somewhere"]))
    code, output = output_in_process(
        "debug=tiny", "+output_dir=elsewhere", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code == 1 and "a run's folder is set with hydra.run.dir=<folder>" in output
    assert not (tmp_path / "elsewhere").exists()
