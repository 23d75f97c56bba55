import pytest
import torch
import yaml

from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS
from cifar_exp.records.checkpoint import load_checkpoint
from cifar_exp.training.build import build_trainer, continue_from
from helpers.compare import assert_same_state
from helpers.overrides import TINY

# Exact: each architecture fixes its count; the published (rounded) figure beside it.
EXPECTED_PARAMS = {
    "lenet5": ({}, 62_006),  # the seed post
    "resnet": ({}, 347_498),  # the seed post
    "resnet20": ({}, 269_722),  # He et al. 2016: 0.27M
    "resnet56": ({}, 853_018),  # He et al. 2016: 0.85M
    "resnet18": ({}, 11_173_962),  # CIFAR ResNet-18: 11.2M
    "wrn-28-10": ({"name": "wrn"}, 36_479_194),  # Zagoruyko & Komodakis 2016 Table 1: 36.5M
    "wrn-16-8": ({"name": "wrn", "depth": 16, "widen_factor": 8}, 10_961_370),  # 11.0M
    "wrn-40-4": ({"name": "wrn", "depth": 40, "widen_factor": 4}, 8_949_210),  # 8.9M
    # kuangliu's 11,171,146 lacks the final BatchNorm (2 x 512 parameters): 11.2M either way.
    "preact_resnet18": ({}, 11_172_170),
    "vgg-16-bn": ({"name": "vgg"}, 14_728_266),  # kuangliu: 14.7M
    "vgg-11": ({"name": "vgg", "depth": 11, "batch_norm": False}, 9_225_610),
    "densenet-bc-100-12": ({"name": "densenet_bc"}, 769_162),  # Huang et al. 2017 Table 2: 0.8M
    # kuangliu's 2,296,922 adds 1x1-conv shortcuts the paper does not have (module docstring).
    "mobilenetv2": ({}, 2_236_682),
}

# Small enough to run a step in a test, and using every option that changes the layers.
SMALL = {
    "wrn": ["model.depth=10", "model.widen_factor=1", "model.dropout=0.3"],
    "preact_resnet18": ["model.width=8"],
    "vgg": ["model.depth=11", "model.width=8"],
    "densenet_bc": ["model.depth=16", "model.growth_rate=4"],
    "mobilenetv2": ["model.width_mult=0.25"],
    "airbench": ["model.widths=[8,16,16]"],
    "resnet18": ["model.width=8"],
    "timm": ["model.arch=test_resnet", "model.drop_rate=0.2"],
    "torchvision": ["model.arch=mobilenet_v3_small"],  # with dropout before its head
}


def small_node(name: str, **extra) -> dict:
    node = {"name": name, **extra}
    for override in SMALL.get(name, []):
        key, value = override.removeprefix("model.").split("=")
        node[key] = yaml.safe_load(value)
    return node


@pytest.mark.parametrize("case", sorted(EXPECTED_PARAMS))
def test_parameter_counts(case):
    options, expected = EXPECTED_PARAMS[case]
    model = MODELS.build({"name": case.split("-")[0], **options})
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape(name, num_classes):
    torch.manual_seed(0)
    model = MODELS.build(small_node(name, num_classes=num_classes)).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


def test_width_option_scales_cifar_resnets():
    narrow = MODELS.build({"name": "resnet20", "width": 8})
    assert sum(p.numel() for p in narrow.parameters()) < EXPECTED_PARAMS["resnet20"][1] / 3


@pytest.mark.parametrize(
    "node, message",
    [
        ({"name": "wrn", "depth": 20}, "model.depth must be 6n + 4 with n >= 1"),
        ({"name": "wrn", "dropout": 1.0}, "model.dropout must be in [0, 1), got 1.0"),
        ({"name": "vgg", "depth": 12}, "model.depth must be one of 11, 13, 16, 19, got 12"),
        ({"name": "densenet_bc", "growth_rate": 0}, "model.growth_rate must be >= 1, got 0"),
        ({"name": "mobilenetv2", "width_mult": 0}, "model.width_mult must be > 0, got 0.0"),
    ],
)
def test_bad_model_options_get_one_line(node, message):
    with pytest.raises(ConfigError) as err:
        MODELS.build(node)
    assert message in str(err.value) and "\n" not in str(err.value)


# The models this change added; each trains and resumes like the rest of the tool.
NEW_MODELS = ["wrn", "preact_resnet18", "vgg", "densenet_bc", "mobilenetv2", "timm", "torchvision"]


def trainer_for(compose, run_dir, name, *overrides):
    # Two batches an epoch: enough to step, checkpoint and resume, fast for the larger nets.
    few = ["dataset.train_size=64", "dataset.test_size=32"]
    cfg = compose([*TINY, *few, f"model={name}", *SMALL.get(name, []), *overrides])
    return build_trainer(cfg, run_dir)[0]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_a_model_trains_and_resumes_bitwise(compose, tmp_path, name):
    """Two epochs straight equal one epoch, a checkpoint, and a resumed second epoch."""
    whole = trainer_for(compose, tmp_path / "whole", name, "trainer.epochs=2")
    before = {k: v.clone() for k, v in whole.net.state_dict().items()}
    whole.fit()
    trained = whole.net.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)

    first = trainer_for(compose, tmp_path / "split", name, "trainer.epochs=2")
    first.epoch(1)  # then stopped: last.pt holds epoch 1
    second = trainer_for(compose, tmp_path / "split", name, "trainer.epochs=2")
    continue_from(second, load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt"))
    second.fit()
    assert_same_state(trained, second.net.state_dict())
