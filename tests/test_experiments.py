"""Experiment presets and search configs compose with the real config and hold their recipes."""

import datetime
import re

import pytest
from omegaconf import OmegaConf

from cifar_exp.config import check_effects, validate
from cifar_exp.errors import UserError
from cifar_exp.hydra_setup import run_name
from cifar_exp.training.resume import resume_config, saved_config
from cifar_exp.training.run_record import run_hparams
from helpers.paths import group_options


def test_presets_exist():
    assert {"seed_lenet5", "seed_resnet", "lenet5_tuned", "resnet18_cifar"} <= set(
        group_options("experiment")
    )


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_every_preset_composes_validates_and_states_its_expected_accuracy(compose, preset):
    cfg = compose([f"experiment={preset}"])
    validate(cfg)
    check_effects(cfg)  # no preset sets a key that does nothing
    assert "experiment" not in cfg  # `# @package _global_`: its keys land at the top
    expected = cfg.expected
    assert expected is not None, f"experiment/{preset}.yaml has no expected: block"
    assert 0 < expected.value <= 1  # a fraction, as metrics.json writes its accuracies
    assert expected.measured_by and expected.runs >= 1
    if expected.runs > 1 and expected.machine is not None:  # a mean over seeds, measured
        # here: the command that measured it ran them all
        assert f"--seeds {expected.runs}" in expected.measured_by
    if expected.machine is None:  # quoted from its source, not measured here
        assert expected.date is None
    else:  # measured with this tool: the command names the preset, with the seed it runs
        assert re.search(rf"(experiment=|--experiments ){preset}\b", expected.measured_by)
        assert expected.seed == cfg.trainer.seed
        assert datetime.date.fromisoformat(expected.date)


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_every_preset_states_its_validation_split_as_it_composes(compose, preset):
    cfg = compose([f"experiment={preset}"])
    # The figure is for the recipe as it composes: its validation split and its epochs.
    assert cfg.expected.val_size == cfg.dataset.val_size
    assert cfg.expected.epochs == cfg.trainer.epochs
    # The figure says which split it comes from: the test split, its final or best epoch.
    assert cfg.expected.metric in ("test_acc", "best_test_acc")


def test_a_presets_expected_figure_is_no_part_of_the_experiment(compose):
    """What a preset reaches documents it: it names no run, is no HParams column, and a
    resumed run may restate it."""
    typed = ["experiment=seed_lenet5", "expected.value=0.5"]
    assert run_name(None, typed) == "experiment-seed_lenet5"
    cfg = compose(typed)
    hparams = run_hparams(cfg, typed)
    assert hparams and not [key for key in hparams if key.startswith("expected")]
    saved = saved_config(OmegaConf.to_yaml(compose(["experiment=seed_lenet5"]), resolve=True), "x")
    assert resume_config(saved, cfg, ["expected.value=0.5"], 1).expected.value == 0.5
    with pytest.raises(UserError, match="resume: trainer.seed would change the experiment"):
        resume_config(saved, compose(["trainer.seed=1"]), ["trainer.seed=1"], 1)


@pytest.mark.parametrize("model", ["lenet5", "resnet"])
def test_seed_presets_are_the_posts_settings(compose, model):
    cfg = compose([f"experiment=seed_{model}"])
    assert cfg.model.name == model
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-3
    assert cfg.optimizer.weight_decay == 0
    assert cfg.scheduler.name == "none"
    assert cfg.augment.name == "none"
    assert cfg.trainer.batch_size == 32 and cfg.trainer.epochs == 10


def test_resnet18_cifar_is_the_classic_recipe(compose):
    cfg = compose(["experiment=resnet18_cifar"])
    assert cfg.model.name == "resnet18"
    assert dict(cfg.optimizer) == {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "decoupled_weight_decay": False,
        # one parameter group: no multipliers
        **dict.fromkeys(
            (
                "norm_lr_mult",
                "norm_weight_decay_mult",
                "bias_lr_mult",
                "bias_weight_decay_mult",
                "head_lr_mult",
                "head_weight_decay_mult",
            ),
            1.0,
        ),
    }
    assert cfg.scheduler.name == "cosine"
    assert (cfg.augment.crop_padding, cfg.augment.flip) == (4, True)
    assert cfg.trainer.batch_size == 128 and cfg.trainer.epochs == 200


def test_command_line_overrides_a_preset(compose):
    cfg = compose(["experiment=resnet18_cifar", "trainer.epochs=5", "optimizer.lr=0.05"])
    assert cfg.trainer.epochs == 5 and cfg.optimizer.lr == 0.05


def test_optuna_search_composes_with_its_search_space(compose):
    from hydra import compose as hydra_compose

    cfg = hydra_compose("config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.cifar_exp_optuna.optuna_sweeper.OptunaSweeper"
    assert sweeper.storage is None  # the study goes to <sweep folder>/optuna.db
    assert sweeper.direction == "maximize"
    assert set(sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "trainer.batch_size"}
    # Trials are chosen on a held-out validation split, the same images whatever the trial.
    assert cfg.dataset.val_size == 5000
    assert "split_seed" not in sweeper.params and cfg.dataset.split_seed == 0
    # After an experiment preset too, and the command line still wins.
    after_preset = hydra_compose(
        "config", overrides=["experiment=seed_lenet5", "hparams_search=optuna"]
    )
    assert after_preset.dataset.val_size == 5000
    chosen = hydra_compose("config", overrides=["hparams_search=optuna", "dataset.val_size=1000"])
    assert chosen.dataset.val_size == 1000


def test_speedrun94_is_airbench94s_recipe_in_this_tools_terms(compose):
    cfg = compose(["experiment=speedrun94"])
    assert (cfg.model.name, list(cfg.model.widths)) == ("airbench", [64, 256, 256])
    # airbench: lr 11.5 per 1024 examples of a summed loss, divided by 1024 * (1 + 1/(1 - 0.85))
    # for its momentum, is lr 1.5 for a mean loss; its decay per step, 0.0153 per 1024 examples
    # over the same scale, is 0.002 = lr * weight_decay.
    kilostep_scale = 1024 * (1 + 1 / (1 - 0.85))
    assert cfg.optimizer.lr == pytest.approx(11.5 / kilostep_scale * 1024, rel=1e-3)
    decay = cfg.optimizer.lr * cfg.optimizer.weight_decay
    assert decay == pytest.approx(0.0153 * 1024 / kilostep_scale, rel=1e-3)
    assert (cfg.optimizer.norm_lr_mult, cfg.optimizer.norm_weight_decay_mult) == (64, 1 / 64)
    assert (cfg.optimizer.momentum, cfg.optimizer.nesterov) == (0.85, True)
    assert cfg.trainer.batch_size == 1024 and cfg.trainer.label_smoothing == 0.2
    assert cfg.trainer.ema_decay == pytest.approx(0.95**5, rel=1e-3)
    assert (cfg.augment.translate, cfg.augment.flip_mode) == (2, "alternate")
    assert cfg.trainer.tta == "flip_translate" and cfg.trainer.precision == "auto"
