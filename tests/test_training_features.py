"""Training options of the fast recipes, on the real Trainer built from the real config."""

import copy

import pytest
import torch
import torch.nn.functional as F

from cifar_exp.errors import ConfigError
from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.training.build import build_trainer, continue_from
from helpers.compare import assert_same_state
from helpers.overrides import TINY


def trainer_for(compose, run_dir, *overrides):
    cfg = compose([*TINY, "trainer.log_images=false", *overrides])
    return build_trainer(cfg, run_dir)[0]


def test_label_smoothing_mixes_the_cross_entropy_with_the_uniform_target(compose, tmp_path):
    eps = 0.2
    trainer = trainer_for(compose, tmp_path, f"trainer.label_smoothing={eps}")
    images, labels = next(iter(trainer.loaders.train))
    before = copy.deepcopy(trainer.net)
    loss, _ = trainer.step(images, labels)
    log_p = F.log_softmax(before(images), dim=1)
    expected = (1 - eps) * F.nll_loss(log_p, labels) - eps * log_p.mean(1).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    # An untrained model's outputs are near uniform, where smoothing changes little, but more
    # than the tolerance above.
    assert abs(loss.item() - F.nll_loss(log_p, labels).item()) > 1e-4


def test_ema_weights_differ_from_the_trained_ones_and_resume_bitwise(compose, tmp_path):
    # 8 steps per epoch; the average starts after half an epoch, then decays as it ramps up.
    ema = ["trainer.ema_decay=0.9", "trainer.ema_every=2", "trainer.ema_start_epochs=0.5"]
    ema.append("trainer.ema_ramp_pow=1")
    whole = trainer_for(compose, tmp_path / "whole", *ema, "trainer.epochs=2")
    whole.fit()
    average = whole.average.state_dict()["average"]
    trained = whole.net.state_dict()
    name = next(iter(trained))  # the first layer's weight
    assert not torch.equal(average[name], trained[name])
    evaluated = whole.average.model_to_evaluate(whole.model)
    assert evaluated is not whole.model and torch.equal(evaluated.state_dict()[name], average[name])

    first = trainer_for(compose, tmp_path / "split", *ema, "trainer.epochs=2")
    first.epoch(1)  # then stopped: last.pt holds epoch 1
    second = trainer_for(compose, tmp_path / "split", *ema, "trainer.epochs=2")
    continue_from(second, load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt"))
    second.fit()
    assert_same_state(whole.average.state_dict(), second.average.state_dict())
    assert_same_state(trained, second.net.state_dict())


def test_the_average_follows_the_formula_from_its_start(compose, tmp_path):
    trainer = trainer_for(
        compose, tmp_path, "trainer.ema_decay=0.5", "trainer.ema_start_epochs=0.25"
    )  # 8 steps per epoch: the average starts at step 3, from the weights then
    images, labels = next(iter(trainer.loaders.train))
    snapshots = []
    for step in range(1, 5):
        trainer.step(images, labels)
        snapshots.append(copy.deepcopy(trainer.net.state_dict()))
        assert (trainer.average.average is None) == (step <= 2)
    name = next(iter(snapshots[0]))
    expected = 0.5 * snapshots[2][name] + 0.5 * snapshots[3][name]
    assert torch.allclose(trainer.average.average[name], expected, atol=1e-7)


def test_lookahead_sets_the_trained_weights_to_the_average(compose, tmp_path):
    trainer = trainer_for(compose, tmp_path, "trainer.ema_decay=0.5", "trainer.ema_lookahead=true")
    images, labels = next(iter(trainer.loaders.train))
    for _ in range(3):
        trainer.step(images, labels)
    average = trainer.average.average
    weights = trainer.net.state_dict()
    assert_same_state(average, {k: weights[k] for k in average})
    assert trainer.average.model_to_evaluate(trainer.model) is trainer.model


@pytest.mark.parametrize(
    "override",
    [
        "trainer.label_smoothing=1.0",
        "trainer.ema_decay=-0.1",
        "trainer.ema_every=0",
        "trainer.ema_start_epochs=-1",
        "trainer.ema_ramp_pow=-2",
    ],
)
def test_bad_training_options_name_the_key(compose, tmp_path, override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        trainer_for(compose, tmp_path, override)


def test_airbench_whitening_runs_once_on_a_fresh_start_not_on_resume(compose, tmp_path):
    small = ["model=airbench", "model.widths=[8,16,16]", "augment.normalize=true"]
    fresh = trainer_for(compose, tmp_path, *small)
    untouched = trainer_for(compose, tmp_path / "resumed", *small)  # as before a resume
    cfg = compose([*TINY, "trainer.log_images=false", *small])
    resumed = build_trainer(cfg, tmp_path / "resumed", fresh=False)[0]
    assert fresh.init_s is not None and resumed.init_s is None
    # Built from the same seed, the weights differ only by the initialization from data,
    # which gives the same result every time.
    assert not torch.equal(fresh.net.whiten.weight, resumed.net.whiten.weight)
    assert torch.equal(untouched.net.whiten.weight, fresh.net.whiten.weight)


def test_trainer_tta_scores_every_evaluation_with_the_flipped_images_too(compose, tmp_path):
    trainer = trainer_for(compose, tmp_path, "trainer.tta=flip")
    final = trainer.fit()
    model, correct = trainer.model.eval(), 0
    with torch.no_grad():
        for images, labels in trainer.loaders.test:
            logits = (model(images) + model(images.flip(3))) / 2
            correct += (logits.argmax(1) == labels).sum().item()
    assert final["test_acc"] == correct / len(trainer.loaders.test.split)


def test_precision_auto_is_resolved_and_recorded_with_its_reason(compose, tmp_path):
    from cifar_exp.records.manifest import RunManifest
    from cifar_exp.runtime.device import choose_precision, read_cpu_flags

    manifest = RunManifest(tmp_path)
    manifest.start()
    cfg = compose([*TINY, "trainer.log_images=false", "trainer.precision=auto"])
    trainer = build_trainer(cfg, tmp_path, manifest)[0]
    expected = choose_precision("cpu", read_cpu_flags(), False)
    assert (trainer.precision.name, trainer.precision.reason) == expected
    assert (manifest.data["precision"], manifest.data["precision_reason"]) == expected
