import pytest
import torch

from cifar_exp.models import MODELS

EXPECTED_PARAMS = {
    "lenet5": 62_006,  # the seed post
    "resnet": 347_498,  # the seed post
    "resnet20": 269_722,  # He et al. 2016: 0.27M
    "resnet56": 853_018,  # He et al. 2016: 0.85M
    "resnet18": 11_173_962,  # CIFAR ResNet-18: 11.2M
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
    model = MODELS.build({"name": name})
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape(name, num_classes):
    torch.manual_seed(0)
    model = MODELS.build({"name": name, "num_classes": num_classes}).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


def test_width_option_scales_cifar_resnets():
    narrow = MODELS.build({"name": "resnet20", "width": 8})
    assert sum(p.numel() for p in narrow.parameters()) < EXPECTED_PARAMS["resnet20"] / 3
