"""airbench94's recipe, option by option: the whitening bias trained for the first epochs,
a fractional last epoch, dropped partial batches, Lookahead synced at the last step; each a
function of the epoch or step, so an interrupted run resumes bitwise."""

import json

import pytest
import torch
from torch import nn

from cifar_exp.components.averaging import WeightAverage
from cifar_exp.components.optim import OPTIMIZERS, SCHEDULERS
from cifar_exp.config import validate
from cifar_exp.datasets import Split
from cifar_exp.datasets.batches import BatchLoader
from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.runtime.signals import Interrupted
from helpers.cli import run_cli_in_process
from helpers.compare import assert_same_run, assert_same_tensorboard
from helpers.interrupt import fit
from helpers.overrides import TINY

# debug=tiny (256 images, batches of 32) with airbench94's recipe, narrowed: 3 epochs, the
# last one half (4 of its 8 batches), the whitening bias trained in epoch 1 only.
RECIPE = [
    *TINY,
    "experiment=speedrun94",
    "dataset=synthetic",
    "device=cpu",
    "model.widths=[8,16,16]",
    "model.whiten_bias_epochs=1",
    "trainer.epochs=3",
    "trainer.last_epoch_fraction=0.5",
    "trainer.batch_size=30",  # 256 = 8 x 30 + 16: drop_last leaves 16 out of every epoch
    "trainer.eval_batch_size=64",
    "trainer.ema_every=2",
    "trainer.precision=fp32",
    "trainer.channels_last=false",
]


def test_the_loader_drops_the_partial_batch_and_cuts_one_epoch_short():
    split = Split(torch.zeros(10, 3, 2, 2, dtype=torch.uint8), torch.arange(10))
    loader = BatchLoader(split, 4, torch.device("cpu"), shuffle=True, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    loader.limit_epoch(3, 1)
    loader.set_epoch(3)
    assert len(loader) == 1 and [len(y) for _, y in loader] == [4]
    loader.set_epoch(2)
    assert len(loader) == 2
    kept = BatchLoader(split, 4, torch.device("cpu"))
    assert [len(y) for _, y in kept] == [4, 4, 2]


def test_the_whitening_bias_trains_up_to_its_epoch_and_then_gets_no_gradient():
    net = MODELS.build({"name": "airbench", "widths": [4, 8, 8], "whiten_bias_epochs": 2})
    trained = []
    for epoch in (1, 2, 3):
        net.set_epoch(epoch)
        net.zero_grad(set_to_none=True)
        net(torch.randn(2, 3, 32, 32)).sum().backward()
        trained.append(net.whiten.bias.grad is not None)
    assert trained == [True, True, False] and net.whiten.weight.grad is None
    never = MODELS.build({"name": "airbench", "widths": [4, 8, 8]})
    assert not never.whiten.bias.requires_grad


def test_lookahead_synced_at_the_end_copies_the_average_only_after_the_last_step():
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    average = WeightAverage(net, 0.5, every=2, lookahead=True, total_steps=5, sync="end")
    seen = []
    for step in range(1, 6):
        net.weight.data += 1.0  # a "training step"
        average.update(step)
        average.epoch_done()  # "end": no copy at an epoch's end
        seen.append(net.weight.item())
    # step 2 starts the average (1+1=2), step 4 lerps it to (2 + 4) / 2 = 3 and copies it;
    # step 5 trains to 4, and the last step puts the average, 3, back.
    assert seen == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_fractional_epoch_run_counts_its_steps_and_lays_the_schedule_over_them(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli_in_process(*RECIPE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (3, 8 + 8 + 4)
    # The triangle ends at min_lr_ratio 0.07 of the lr exactly at the last step.
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(1.5 * 0.07)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["final"]["epochs"] == 3 and "test_acc" in metrics["epochs"][-1]


@pytest.mark.parametrize("stop_at", [5, 18])  # in epoch 1 (the bias trains), in the last one
def test_interrupted_anywhere_the_recipe_resumes_bitwise(compose, tmp_path, stop_at):
    cfg = compose(RECIPE)
    fit(cfg, tmp_path / "ref")
    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "run", stop_at=stop_at)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == stop_at and state["progress"]["batch"] > 0
    fit(cfg, tmp_path / "run", checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    if stop_at > 8:  # a resume inside epoch 1 logs no train/init_s: its init ran before
        assert_same_tensorboard(tmp_path / "ref", tmp_path / "run")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.last_epoch_fraction=0"], "trainer.last_epoch_fraction must be in (0, 1]"),
        (["trainer.last_epoch_fraction=1.5"], "trainer.last_epoch_fraction must be in (0, 1]"),
        (["trainer.ema_sync=step"], "trainer.ema_sync must be one of epoch, end"),
        (["model=airbench", "model.whiten_bias_epochs=-1"], "model.whiten_bias_epochs must be"),
    ],
)
def test_bad_recipe_values_get_one_line(compose, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


# airbench94_muon's recipe on debug=tiny, narrowed: 3 epochs of 8 batches, the whitening bias
# trained (and its lr decayed to 0) in epoch 1 only.
MUON_RECIPE = [
    *TINY,
    "experiment=speedrun94_muon",
    "dataset=synthetic",
    "device=cpu",
    "model.widths=[8,16,16]",
    "model.whiten_bias_epochs=1",
    "trainer.epochs=3",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=64",
    "trainer.precision=fp32",
    "trainer.channels_last=false",
]


def muon_parts(compose, overrides=()):
    cfg = compose([*MUON_RECIPE, *overrides])
    net = MODELS.build(cfg.model)
    opt = OPTIMIZERS.build(cfg.optimizer, net)
    return net, opt, SCHEDULERS.build(cfg.scheduler, opt, 24, 8)


def test_the_muon_recipe_gives_filters_muon_and_the_rest_sgd_at_airbench94_muons_rates(compose):
    net, opt, sched = muon_parts(compose)
    muon, plain, whiten_bias, head = opt.param_groups
    assert len(muon["params"]) == 6 and (muon["lr"], muon["weight_decay"]) == (0.24, 0.0)
    assert type(opt.rest) is torch.optim.SGD  # the decay is added to the gradient
    norms = [m.bias for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    trained = [p for p in plain["params"] if p.requires_grad]  # frozen ones get no step
    assert trained == norms and plain["lr"] == 106.0
    assert whiten_bias["params"] == [net.whiten.bias] and whiten_bias["train_epochs"] == 1
    assert head["params"] == [net.head.weight]
    # The summed loss's SGD (lr 0.67, decay 2e-6 x 2000 / 0.67) for a mean over 2000 images:
    # the same decay per step, lr x decay = 0.004.
    assert head["lr"] == pytest.approx(0.67 * 2000, rel=1e-6)
    assert head["lr"] * head["weight_decay"] == pytest.approx(2e-6 * 2000, rel=1e-4)
    assert plain["lr"] * plain["weight_decay"] == pytest.approx(2e-6 * 2000, rel=1e-4)
    seen = []
    for _ in range(24):
        seen.append([g["lr"] / g["initial_lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    # Every lr falls to 0 in a straight line over the run, the whitening bias's over epoch 1.
    assert [s[0] for s in seen] == pytest.approx([1 - step / 24 for step in range(24)])
    assert [s[2] for s in seen] == pytest.approx([max(0, 1 - step / 8) for step in range(24)])


def test_the_unit_std_head_divides_its_logits_by_its_width():
    net = MODELS.build({"name": "airbench", "widths": [4, 8, 8], "head": "unit_std"})
    assert net.head.weight.std().item() == pytest.approx(1.0)
    net.eval()
    images = torch.randn(2, 3, 32, 32)
    features = []
    net.head.register_forward_hook(lambda module, args, out: features.append(out))
    assert torch.equal(net(images), features[0] * (1 / 8))


def test_normalized_muon_rescales_each_filter_bank_before_its_update():
    nets = [MODELS.build({"name": "airbench", "widths": [4, 8, 8]}) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    options = {"name": "muon", "lr": 0.1, "rest": "sgd", "rest_lr": 0.01, "weight_decay": 0.0}
    normalized = OPTIMIZERS.build({**options, "normalize_weights": True}, nets[0])
    plain = OPTIMIZERS.build(options, nets[1])
    images = torch.randn(4, 3, 32, 32)
    for net in nets:
        net(images).square().sum().backward()
    with torch.no_grad():  # by hand on the twin: w <- w * sqrt(out channels) / |w|
        for weight in plain.weights:
            weight.mul_(len(weight) ** 0.5 / weight.norm())
    normalized.step()
    plain.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_interrupted_in_its_first_epoch_the_muon_recipe_resumes_bitwise(compose, tmp_path):
    cfg = compose(MUON_RECIPE)
    fit(cfg, tmp_path / "ref")
    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "run", stop_at=5)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    fit(cfg, tmp_path / "run", checkpoint=state)
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_an_early_decay_without_early_parameters_is_refused_in_one_line(compose):
    with pytest.raises(ConfigError) as err:
        muon_parts(compose, ["model.whiten_bias_epochs=0"])
    assert "scheduler.early_decay=true: the model trains no parameter" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=airbench", "model.head=wide"], "model.head must be one of scaled, unit_std"),
        (["optimizer=muon", "optimizer.rest_weight_decay=-1"], "optimizer.rest_weight_decay"),
        (["optimizer=sgd", "optimizer.head_lr_mult=0"], "optimizer.head_lr_mult must be > 0"),
    ],
)
def test_bad_muon_recipe_values_get_one_line(compose, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
