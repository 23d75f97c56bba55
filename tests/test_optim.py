import pytest
import torch
from omegaconf import OmegaConf

from cifar_exp.optim import OPTIMIZERS, SCHEDULERS


def lrs(scheduler_options, epochs=4, steps_per_epoch=10, lr=1.0):
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = OPTIMIZERS.build({"name": "sgd", "lr": lr}, params)
    sched = SCHEDULERS.build(scheduler_options, opt, epochs, steps_per_epoch)
    out = []
    for _ in range(epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_none_is_constant():
    assert set(lrs({"name": "none"})) == {1.0}


def test_cosine_warms_up_then_decays_to_the_floor():
    values = lrs({"name": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.1})
    assert values[0] == pytest.approx(0.1)  # first of 10 warmup steps
    assert values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert values[-1] == pytest.approx(0.1, abs=0.01)


def test_step_multiplies_by_gamma_every_step_epochs():
    values = lrs({"name": "step", "step_epochs": 1, "gamma": 0.5, "warmup_epochs": 0})
    assert values[0] == values[9] == 1.0
    assert values[10] == 0.5 and values[39] == 0.125


def test_onecycle_peaks_at_the_configured_lr():
    values = lrs(
        {"name": "onecycle", "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}
    )
    assert values[0] == pytest.approx(0.1)
    assert max(values) == pytest.approx(1.0, rel=1e-3)
    assert values[-1] < 0.01


@pytest.mark.parametrize(
    "name, kind",
    [
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_each_optimizer_builds_from_its_composed_option(compose, name, kind):
    cfg = compose([f"optimizer={name}", "optimizer.lr=0.01", "optimizer.weight_decay=0.5"])
    opt = OPTIMIZERS.build(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    assert type(opt) is kind
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.5


def test_a_stored_plain_config_builds_the_same_optimizer(compose):
    """Checkpoints store the config as plain YAML: read back, it builds the same optimizer."""
    cfg = compose(["optimizer=rmsprop", "optimizer.alpha=0.9", "optimizer.momentum=0.5"])
    plain = OmegaConf.create(OmegaConf.to_yaml(cfg.optimizer))
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = OPTIMIZERS.build(plain, params)
    assert opt.defaults == OPTIMIZERS.build(cfg.optimizer, params).defaults
    assert (opt.defaults["alpha"], opt.defaults["momentum"]) == (0.9, 0.5)
