"""model=airbench: its size, its frozen parts, its whitening init and its options."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifar_exp.datasets.imagefolder import decode_image
from cifar_exp.models import MODELS, initialize_from_data
from cifar_exp.models.airbench import WHITEN_EPS, patch_second_moment
from helpers.cli import run_cli_in_process
from helpers.overrides import TINY
from helpers.paths import CIFAR10_JPEG


def airbench_params(widths: list[int], num_classes: int = 10) -> int:
    """airbench94's parameter count, from its layers."""
    whiten = 24 * 3 * 2 * 2 + 24  # 2 * 12 filters of 3x2x2, and their biases
    ins = [24, *widths]
    # conv1 (cin -> cout), conv2 (cout -> cout), two BatchNorms (weight, bias)
    blocks = sum(9 * a * b + 9 * b * b + 2 * 2 * b for a, b in zip(ins[:-1], widths, strict=True))
    return whiten + blocks + widths[-1] * num_classes  # head without bias


@pytest.mark.parametrize("widths", [[64, 256, 256], [8, 16, 16]])
def test_parameter_count_follows_the_widths(widths):
    model = MODELS.build({"name": "airbench", "widths": widths})
    count = sum(p.numel() for p in model.parameters())
    print(f"airbench widths {widths}: {count:,} parameters")
    assert count == airbench_params(widths)
    if widths == [64, 256, 256]:
        assert round(count / 1e4) == 197  # airbench94's reported ~1.97M


def test_forward_shape_and_scaled_logits():
    torch.manual_seed(0)
    model = MODELS.build({"name": "airbench", "widths": [8, 16, 16], "num_classes": 7}).eval()
    images = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        out = model(images)
        model.scaling = 1.0
        unscaled = model(images)
    assert out.shape == (5, 7)
    torch.testing.assert_close(out, unscaled / 9)


def test_only_the_batchnorm_biases_and_convolutions_train():
    torch.manual_seed(0)
    model = MODELS.build({"name": "airbench", "widths": [8, 16, 16]})
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # airbench's momentum 0.6 keeps 60% of the running statistics: PyTorch's momentum 0.4.
    assert [(m.momentum, m.eps) for m in norms] == [(pytest.approx(0.4), 1e-12)] * 6
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8)).backward()
    optimizer.step()
    after = model.state_dict()
    norm_weights = [f"{name}.weight" for name, m in model.named_modules() if m in norms]
    frozen = ["whiten.weight", "whiten.bias", *norm_weights]
    assert len(frozen) == 2 + 6
    for key in frozen:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
    for key in ["blocks.0.2.bias", "blocks.2.4.weight", "head.weight"]:
        assert not torch.equal(after[key], before[key]), key


def training_images(count: int = 256) -> torch.Tensor:
    """Normalized training images: real CIFAR-10 JPEGs when at hand, else smooth random
    images whose neighbouring pixels and channels are correlated like photographs'."""
    files = sorted(CIFAR10_JPEG.glob("train/*/00[0-2]*.jpg"))[:count]
    if files:
        pixels = np.stack([decode_image(str(f), 32) for f in files])
        images = torch.from_numpy(pixels).float() / 255
    else:
        generator = torch.Generator().manual_seed(0)
        coarse = torch.randn(count, 1, 8, 8, generator=generator)
        colour = torch.randn(count, 3, 8, 8, generator=generator)
        images = F.interpolate(coarse + 0.3 * colour, 32, mode="bilinear")
        images = images + 0.01 * torch.randn(images.shape, generator=generator)
    mean, std = images.mean((0, 2, 3), keepdim=True), images.std((0, 2, 3), keepdim=True)
    return (images - mean) / std


def whitened_moment(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Second moment of the 12 positive whitening filters' outputs over all patches."""
    filters = model.whiten.weight[:12].reshape(12, -1).double()
    return filters @ patch_second_moment(images, 2) @ filters.T


def test_whitening_init_makes_the_patch_covariance_the_identity():
    images = training_images()
    model = MODELS.build({"name": "airbench", "widths": [8, 16, 16]})
    untouched = model.state_dict()["blocks.0.0.weight"].clone()
    model.init_from_data(images, eps=1e-9)
    weight = model.whiten.weight
    torch.testing.assert_close(weight[12:], -weight[:12])
    torch.testing.assert_close(
        whitened_moment(model, images), torch.eye(12).double(), atol=2e-3, rtol=0
    )
    # The outputs of the layer itself, not just its filters: uncorrelated, unit variance.
    with torch.no_grad():
        out = F.conv2d(images, weight[:12]).permute(0, 2, 3, 1).reshape(-1, 12).double()
    torch.testing.assert_close(out.T @ out / len(out), torch.eye(12).double(), atol=2e-3, rtol=0)
    assert torch.equal(model.state_dict()["blocks.0.0.weight"], untouched)


def test_default_eps_damps_only_the_weakest_components():
    images = training_images()
    model = MODELS.build({"name": "airbench", "widths": [8, 16, 16]})
    assert initialize_from_data(model, images)
    moment = whitened_moment(model, images)
    eigenvalues = torch.linalg.eigvalsh(patch_second_moment(images, 2)).flip(0)
    expected = torch.diag(eigenvalues / (eigenvalues + WHITEN_EPS))
    torch.testing.assert_close(moment, expected, atol=1e-5, rtol=1e-4)  # float32 filters
    assert expected[0, 0] > 0.99 and expected[-1, -1] < 0.9  # the data has weak components


def test_initialize_from_data_skips_models_without_such_a_step():
    model = MODELS.build({"name": "lenet5"})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not initialize_from_data(model, torch.randn(4, 3, 32, 32))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_init_from_data_refuses_images_of_the_wrong_shape():
    model = MODELS.build({"name": "airbench", "widths": [8, 16, 16]})
    with pytest.raises(ValueError, match=r"expected float images \[N, 3, H, W\]"):
        model.init_from_data(torch.zeros(4, 32, 32))


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.widths=[0,1,2]", "model.widths must be three positive integers, got [0, 1, 2]"),
        ("model.widths=[8,16]", "model.widths must be three positive integers, got [8, 16]"),
        ("model.widths=abc", "full_key: model.widths"),
        ("model.batchnorm_momentum=1", "model.batchnorm_momentum must be in (0, 1), got 1.0"),
        ("model.scaling=0", "model.scaling must be > 0, got 0.0"),
    ],
)
def test_bad_options_exit_nonzero_naming_the_key(tmp_path, override, message):
    proc = run_cli_in_process(
        *TINY, "model=airbench", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert message in output
    assert "Traceback" not in output


def test_tiny_run_trains_and_its_checkpoint_carries_the_whitening_layer(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli_in_process(
        *TINY, "model=airbench", "model.widths=[8,16,16]", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "airbench"
    assert torch.isfinite(torch.tensor(metrics["epochs"][0]["train_loss"]))
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert state["whiten.weight"].shape == (24, 3, 2, 2)
    assert state["blocks.2.4.weight"].shape == (16, 16, 3, 3)
