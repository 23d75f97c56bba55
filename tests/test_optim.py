import copy
import io

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from cifar_exp.components.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    Muon,
    newton_schulz,
    parameter_kinds,
)
from cifar_exp.config import validate
from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.runtime.device import auto_precision
from helpers.cli import output_in_process
from helpers.overrides import TINY


def lrs(scheduler_options, epochs=4, steps_per_epoch=10, lr=1.0):
    opt = OPTIMIZERS.build({"name": "sgd", "lr": lr}, nn.Linear(1, 1))
    sched = SCHEDULERS.build(scheduler_options, opt, epochs * steps_per_epoch, steps_per_epoch)
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
    opt = OPTIMIZERS.build(cfg.optimizer, nn.Linear(1, 1))
    assert type(opt) is kind
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.5


def test_a_stored_plain_config_builds_the_same_optimizer(compose):
    """Checkpoints store the config as plain YAML: read back, it builds the same optimizer."""
    cfg = compose(["optimizer=rmsprop", "optimizer.alpha=0.9", "optimizer.momentum=0.5"])
    plain = OmegaConf.create(OmegaConf.to_yaml(cfg.optimizer))
    model = nn.Linear(1, 1)
    opt = OPTIMIZERS.build(plain, model)
    assert opt.defaults == OPTIMIZERS.build(cfg.optimizer, model).defaults
    assert (opt.defaults["alpha"], opt.defaults["momentum"]) == (0.9, 0.5)


def test_linear_warms_up_then_decays_as_the_formula_says():
    """1 warmup epoch of 10 steps, then lr * (r + (1 - r) * (1 - k / 30)) at decay step k."""
    values = lrs({"name": "linear", "warmup_epochs": 1, "min_lr_ratio": 0.1})
    formula = [(s + 1) / 10 for s in range(10)] + [0.1 + 0.9 * (1 - k / 30) for k in range(30)]
    assert values == pytest.approx(formula)
    assert values[9] == values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(0.13)


def test_linear_without_warmup_decays_to_zero_by_default():
    values = lrs({"name": "linear"}, epochs=1, steps_per_epoch=4)
    assert values == pytest.approx([1.0, 0.75, 0.5, 0.25])


def airbench_triangle(steps, start, end, peak):
    """airbench94's lr factors, as its train() computes them (airbench 0.1.8, utils.py)."""
    xp = torch.tensor([0, int(peak * steps), steps])
    fp = torch.tensor([start, 1, end])
    x = torch.arange(1 + steps)
    m = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    b = fp[:-1] - (m * xp[:-1])
    indices = torch.clamp(torch.sum(torch.ge(x[:, None], xp[None, :]), 1) - 1, 0, len(m) - 1)
    return (m[indices] * x + b[indices]).tolist()


def test_linear_from_a_start_ratio_to_a_peak_share_is_airbench94s_triangle():
    """476 steps (9.9 epochs of 48): 0.2 at the first step, the peak at step int(0.23 * 476),
    0.07 at the last, step for step as airbench's own schedule."""
    opt = OPTIMIZERS.build({"name": "sgd", "lr": 1.0}, nn.Linear(1, 1))
    triangle = {"name": "linear", "start_ratio": 0.2, "warmup_ratio": 0.23, "min_lr_ratio": 0.07}
    sched = SCHEDULERS.build(triangle, opt, 476, 48)
    values = []
    for _ in range(477):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert values == pytest.approx(airbench_triangle(476, 0.2, 0.07, 0.23), abs=1e-6)
    assert values[0] == pytest.approx(0.2) and values[109] == pytest.approx(1.0)


def small_convnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_parameter_kinds_tell_norms_biases_and_the_output_layer():
    net = small_convnet()
    kinds = list(parameter_kinds(net))
    assert [p for _, p in kinds] == list(net.parameters())
    assert [k for k, _ in kinds] == ["weight", "norm", "norm", "weight", "bias", "head", "bias"]


@pytest.mark.parametrize(
    "experiment, kind, options",
    [
        ("seed_lenet5", torch.optim.Adam, {"lr": 1e-3}),
        ("seed_resnet", torch.optim.Adam, {"lr": 1e-3}),
        ("lenet5_tuned", torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 5e-4}),
        (
            "resnet18_cifar",
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        ),
    ],
)
def test_presets_build_the_optimizer_a_plain_parameter_list_builds(
    compose, experiment, kind, options
):
    """With every multiplier at 1, one group: what the presets built before groups existed."""
    cfg = compose([f"experiment={experiment}"])
    net = MODELS.build(cfg.model)
    opt = OPTIMIZERS.build(cfg.optimizer, net)
    assert type(opt) is kind and len(opt.param_groups) == 1
    assert opt.param_groups[0]["params"] == list(net.parameters())
    assert opt.state_dict() == kind(net.parameters(), **options).state_dict()


def test_multipliers_give_norms_and_biases_their_own_groups(compose):
    cfg = compose(
        [
            "optimizer=sgd",
            "optimizer.lr=0.5",
            "optimizer.weight_decay=0.01",
            "optimizer.norm_lr_mult=64",
            "optimizer.norm_weight_decay_mult=0.015625",
            "optimizer.bias_lr_mult=2",
        ]
    )
    net = small_convnet()
    groups = OPTIMIZERS.build(cfg.optimizer, net).param_groups
    conv1, bn, conv2, head = net[0], net[1], net[3], net[6]
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (0.5, 0.01),
        (32.0, 0.01 / 64),
        (1.0, 0.01),
    ]
    assert groups[0]["params"] == [conv1.weight, conv2.weight, head.weight]
    assert groups[1]["params"] == [bn.weight, bn.bias]
    assert groups[2]["params"] == [conv2.bias, head.bias]


def sgd_steps(decoupled, steps=2):
    """Two steps of SGD (lr 0.1, momentum 0.9, weight decay 0.5) on loss 3 * p from p = 2."""
    p = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    model = nn.Module()
    model.p = p
    options = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.5}
    opt = OPTIMIZERS.build({**options, "decoupled_weight_decay": decoupled}, model)
    for _ in range(steps):
        opt.zero_grad()
        (3 * p).sum().backward()
        opt.step()
    return p.item()


def test_decoupled_sgd_shrinks_the_weights_outside_the_momentum():
    # p <- p * (1 - lr * wd), then buf <- 0.9 buf + g, p <- p - lr * buf:
    # step 1: 2 * 0.95 - 0.1 * 3 = 1.6; step 2: 1.6 * 0.95 - 0.1 * 5.7 = 0.95.
    assert sgd_steps(decoupled=True) == pytest.approx(0.95, abs=1e-12)
    # torch's coupled decay adds wd * p to the gradient, so it enters the momentum:
    # step 1: g = 3 + 1 = 4, p = 2 - 0.4 = 1.6; step 2: g = 3.8, buf = 7.4, p = 1.6 - 0.74.
    assert sgd_steps(decoupled=False) == pytest.approx(0.86, abs=1e-12)


def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(32, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 10, (32,), generator=generator)


def train_steps(net, opt, steps):
    images, labels = batch()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


MUON = {"name": "muon", "lr": 0.05, "rest_lr": 0.01, "weight_decay": 0.01}


@pytest.mark.parametrize("rest", ["adamw", "sgd"])
def test_muon_trains_the_conv_filters_and_passes_the_rest_on(rest):
    net = small_convnet()
    opt = OPTIMIZERS.build({**MUON, "rest": rest}, net)
    muon_group, *rest_groups = opt.param_groups
    assert [m.shape for m in muon_group["params"]] == [(8, 27), (16, 72)]
    assert sum(len(g["params"]) for g in rest_groups) == 5  # norm, biases and the head
    before = net[0].weight.detach().clone()
    losses = train_steps(net, opt, 8)
    assert losses[-1] < 0.9 * losses[0]
    assert not torch.equal(net[0].weight, before)  # the views share the filters' memory


def test_muon_steps_channels_last_filters_as_contiguous_ones():
    """The matrix view orders a channels_last filter's columns differently; the step is the
    same. Both optimizers get the same gradients (the contiguous net's), so what is compared is
    the step alone: the convolutions themselves round differently in the two layouts, by an
    amount that depends on torch's thread count."""
    nets = [small_convnet(), small_convnet().to(memory_format=torch.channels_last)]
    assert nets[1][3].weight.is_contiguous(memory_format=torch.channels_last)
    optimizers = [OPTIMIZERS.build(MUON, net) for net in nets]
    images, labels = batch()
    for _ in range(3):
        for net, opt in zip(nets, optimizers, strict=True):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(images), labels).backward()
        for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
            b.grad.copy_(a.grad)  # in place: Muon's matrix views of the filters see it
        for opt in optimizers:
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_muon_under_a_grad_scaler_steps_as_without_one():
    """The scaler unscales the gradients Muon reads (a power-of-two scale: exactly)."""
    plain, scaled = small_convnet(), small_convnet()
    train_steps(plain, OPTIMIZERS.build(MUON, plain), 2)
    opt, scaler = OPTIMIZERS.build(MUON, scaled), torch.amp.GradScaler("cpu", init_scale=1024.0)
    images, labels = batch()
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        scaler.scale(nn.functional.cross_entropy(scaled(images), labels)).backward()
        scaler.step(opt)
        scaler.update()
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw", "spectral_unclamped"])
@pytest.mark.parametrize("shape", [(8, 20), (30, 6)])
def test_muon_in_bf16_steps_exactly_as_torchs_muon(adjust_lr_fn, shape):
    torch.manual_seed(0)
    ours, torchs = nn.Parameter(torch.randn(shape)), nn.Parameter(torch.randn(shape))
    torchs.data.copy_(ours)
    options = {"lr": 0.1, "weight_decay": 0.01, "adjust_lr_fn": adjust_lr_fn}
    optimizers = [Muon([ours], torch.bfloat16, **options), torch.optim.Muon([torchs], **options)]
    for _ in range(3):
        ours.grad = torch.randn(shape)
        torchs.grad = ours.grad.clone()
        for opt in optimizers:
            opt.step()
    assert torch.equal(ours, torchs)
    assert optimizers[0].state_dict()["state"][0]["momentum_buffer"].dtype == torch.float32


def test_newton_schulz_in_fp32_is_the_exact_iteration_and_bf16_near_it():
    g = torch.randn(64, 288, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = newton_schulz(g, (3.4445, -4.7750, 2.0315), 3, 1e-7)
    fp32 = newton_schulz(g.float(), (3.4445, -4.7750, 2.0315), 3, 1e-7)
    bf16 = newton_schulz(g.bfloat16(), (3.4445, -4.7750, 2.0315), 3, 1e-7)
    assert (fp32 - exact).abs().max() < 1e-5
    assert 1e-4 < (bf16.double() - exact).abs().max() < 0.05


def test_muon_newton_schulz_precision_follows_the_hardware_unless_set():
    native = auto_precision(torch.device("cpu"))[0] == "bf16"
    expected = {"auto": torch.bfloat16 if native else torch.float32}
    expected |= {"bf16": torch.bfloat16, "fp32": torch.float32}
    for precision, dtype in expected.items():
        opt = OPTIMIZERS.build({**MUON, "ns_precision": precision}, small_convnet())
        assert opt.muon.ns_dtype == dtype, precision


def test_muon_state_dict_round_trips_bitwise():
    net = small_convnet()
    opt = OPTIMIZERS.build(MUON, net)
    sched = SCHEDULERS.build({"name": "linear", "warmup_epochs": 1}, opt, 8, 4)
    train_steps(net, opt, 3)
    sched.step()
    saved = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, saved)
    twin = copy.deepcopy(small_convnet())
    twin_opt = OPTIMIZERS.build(MUON, twin)
    saved.seek(0)
    state = torch.load(saved)
    twin.load_state_dict(state["net"])
    twin_opt.load_state_dict(state["opt"])
    assert [g["lr"] for g in twin_opt.param_groups] == [g["lr"] for g in opt.param_groups]
    train_steps(net, opt, 2)
    train_steps(twin, twin_opt, 2)
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer.norm_lr_mult=0"], "optimizer.norm_lr_mult must be > 0, got 0.0"),
        (["optimizer.bias_lr_mult=-1"], "optimizer.bias_lr_mult must be > 0, got -1.0"),
        (["optimizer.norm_weight_decay_mult=-1"], "optimizer.norm_weight_decay_mult must be >= 0"),
        (["optimizer.bias_weight_decay_mult=-1"], "optimizer.bias_weight_decay_mult must be >= 0"),
        (["optimizer=muon", "optimizer.momentum=1"], "optimizer.momentum must be in [0, 1)"),
        (["optimizer=muon", "optimizer.ns_steps=0"], "optimizer.ns_steps must be >= 1, got 0"),
        (
            ["optimizer=muon", "optimizer.ns_precision=fp16"],
            "optimizer.ns_precision must be one of auto, bf16, fp32, got 'fp16'",
        ),
        (
            ["optimizer=muon", "optimizer.adjust_lr_fn=none"],
            "optimizer.adjust_lr_fn must be one of original, match_rms_adamw, spectral_unclamped",
        ),
        (["optimizer=muon", "optimizer.rest=adam"], "optimizer.rest must be one of sgd, adamw"),
        (["optimizer=muon", "optimizer.rest_lr=0"], "optimizer.rest_lr must be > 0, got 0.0"),
        (["optimizer=muon", "optimizer.rest_momentum=0"], "optimizer.rest_momentum must be in"),
        (["scheduler=linear", "scheduler.min_lr_ratio=2"], "scheduler.min_lr_ratio must be in"),
        (["scheduler=linear", "scheduler.warmup_epochs=-1"], "scheduler.warmup_epochs must be"),
        (["scheduler=linear", "scheduler.warmup_ratio=1"], "scheduler.warmup_ratio must be in"),
        (["scheduler=cosine", "scheduler.start_ratio=2"], "scheduler.start_ratio must be in"),
        (
            ["scheduler=linear", "scheduler.warmup_epochs=1", "scheduler.warmup_ratio=0.2"],
            "both set the warmup; set one of them to 0",
        ),
    ],
)
def test_bad_optimizer_and_schedule_values_get_one_line(compose, overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose(overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer=muon", "optimizer.rest=adam"], "optimizer.rest must be one of sgd, adamw"),
        (["optimizer=sgd", "optimizer.norm_lr_mult=0"], "optimizer.norm_lr_mult must be > 0"),
    ],
)
def test_bad_values_stop_the_entrypoint(tmp_path, overrides, message):
    code, output = output_in_process(
        *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code == 1
    assert message in output
    assert "Traceback" not in output
