"""`model=timm` and `model=torchvision`: the libraries' own networks, by name."""

import sys
import time

import pytest
import torch
import torchvision

from cifar_exp.errors import ConfigError
from cifar_exp.models import MODELS, library, torchvision_net
from helpers.cli import run_in_process
from helpers.compare import assert_same_state
from helpers.overrides import TINY

timm = pytest.importorskip("timm", reason='timm is an optional extra: pip install -e ".[dev]"')


def built_with_seed(build, seed=0):
    torch.manual_seed(seed)
    return build().state_dict()


def test_torchvision_builds_what_torchvision_builds_given_the_same_seed():
    ours = built_with_seed(lambda: MODELS.build({"name": "torchvision", "arch": "resnet18"}))
    theirs = built_with_seed(lambda: torchvision.models.get_model("resnet18", num_classes=10))
    assert_same_state(ours, theirs)


def test_timm_builds_what_timm_builds_given_the_same_seed():
    node = {"name": "timm", "arch": "test_resnet", "drop_rate": 0.2, "num_classes": 7}
    node["kwargs"] = {"drop_path_rate": 0.1}
    ours = built_with_seed(lambda: MODELS.build(node))
    theirs = built_with_seed(
        lambda: timm.create_model("test_resnet", num_classes=7, drop_rate=0.2, drop_path_rate=0.1)
    )
    assert_same_state(ours, theirs)
    assert MODELS.build(node).drop_rate == 0.2


@pytest.mark.parametrize(
    "node, message",
    [
        (
            {"name": "torchvision", "arch": "resnt18"},
            "model.arch: unknown architecture 'resnt18' (closest: resnet18, ",
        ),
        (
            {"name": "timm", "arch": "resnet_18"},
            "model.arch: unknown architecture 'resnet_18' (closest: resnet18, ",
        ),
        (
            {"name": "torchvision", "arch": "vgg11", "small_input": True},
            "model.small_input must be false outside torchvision's ResNet family",
        ),
        (
            {"name": "timm", "arch": "test_vit", "small_input": True},
            "model.small_input applies to timm's ResNet family",
        ),
        (
            {"name": "torchvision", "weights": "IMAGENET9"},
            "model.weights must be one of IMAGENET1K_V1, DEFAULT for resnet18, got 'IMAGENET9'",
        ),
        ({"name": "timm", "drop_rate": 1.0}, "model.drop_rate must be in [0, 1), got 1.0"),
    ],
)
def test_bad_library_model_options_get_one_line(node, message):
    with pytest.raises(ConfigError) as err:
        MODELS.build(node)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unresolvable_host_is_unreachable_at_once():
    start = time.perf_counter()
    assert not library.reachable("weights.invalid", timeout=3)  # .invalid never resolves
    assert time.perf_counter() - start < 4


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty weight caches and no network, whatever the machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(library, "reachable", lambda host, **_: False)
    from huggingface_hub import constants  # read its cache folder once, at import

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_torchvision_weights_offline_and_uncached_are_one_line_naming_the_cache(offline):
    with pytest.raises(ConfigError) as err:
        MODELS.build({"name": "torchvision", "arch": "resnet18", "weights": "DEFAULT"})
    cached = offline / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(err.value) == (
        f"model.weights=DEFAULT: the weights are not cached at {cached} and "
        "download.pytorch.org cannot be reached; download "
        "https://download.pytorch.org/models/resnet18-f37072fd.pth elsewhere and put it "
        "there, or set model.weights=null"
    )


def test_timm_pretrained_offline_and_uncached_is_one_line_naming_the_cache(offline):
    with pytest.raises(ConfigError) as err:
        MODELS.build({"name": "timm", "arch": "resnet18", "pretrained": True})
    message = str(err.value)
    assert message.startswith("model.pretrained: the weights are not cached at ")
    assert str(offline / "hf" / "models--timm--resnet18.a1_in1k") in message
    assert "`hf download timm/resnet18.a1_in1k`" in message and "\n" not in message


def test_cached_torchvision_weights_load_but_for_the_head_and_the_small_stem(offline):
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18()  # stands in for the downloaded file
    cached = offline / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cached)
    node = {"name": "torchvision", "arch": "resnet18", "weights": "DEFAULT", "small_input": True}
    model = MODELS.build(node).state_dict()
    source = imagenet.state_dict()
    kept = {"conv1.weight", "fc.weight", "fc.bias"}  # their shapes differ
    assert all(torch.equal(model[k], source[k]) for k in model if k not in kept)
    assert model["fc.weight"].shape == (10, 512) and model["conv1.weight"].shape[-1] == 3


@pytest.mark.parametrize("name", ["torchvision", "timm"])
def test_small_input_keeps_a_32x32_image_at_4x4_into_the_last_stage(name):
    sizes = {}
    for small in (False, True):
        model = MODELS.build({"name": name, "arch": "resnet18", "small_input": small}).eval()
        body = torch.nn.Sequential(*list(model.children())[:-2])  # up to the pooling
        with torch.no_grad():
            sizes[small] = body(torch.rand(1, 3, 32, 32)).shape[-1]
    assert sizes == {False: 1, True: 4}


def test_timm_missing_is_one_line_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now fails
    with pytest.raises(ConfigError, match=r"model=timm needs the timm package: pip install"):
        MODELS.build({"name": "timm"})


def test_torchvision_weights_file_is_where_torch_hub_caches(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    path = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert torchvision_net.weights_file(weights) == path


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=torchvision", "model.arch=resnt18"], "model.arch: unknown architecture 'resnt18'"),
        (["model=torchvision", "model.weights=DEFAULT"], "model.weights=DEFAULT: the weights are"),
        (["model=timm", "model.pretrained=true"], "model.pretrained: the weights are not cached"),
    ],
)
def test_the_entrypoint_stops_at_once_with_the_one_line(offline, capfd, overrides, message):
    run_dir = offline / "run"
    start = time.perf_counter()
    code = run_in_process(*TINY, *overrides, f"hydra.run.dir={run_dir}", cwd=offline)
    assert code == 1 and time.perf_counter() - start < 30
    out = capfd.readouterr()
    assert message in out.out + out.err and "Traceback" not in out.out + out.err


@pytest.mark.integration  # about 10 s: with the integration tests
def test_a_run_on_pretrained_weights_resumes_and_evaluates_without_them(offline, compose):
    """The checkpoint brings the weights: once trained, the cached file is not needed."""
    from cifar_exp.training.inference import load_trained

    cached = offline / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    run_dir = offline / "run"
    tuned = ["model=torchvision", "model.arch=resnet18", "model.weights=DEFAULT"]
    few = ["dataset.train_size=64", "dataset.test_size=32"]
    assert run_in_process(*TINY, *few, *tuned, f"hydra.run.dir={run_dir}", cwd=offline) == 0
    cached.unlink()  # offline and uncached from here on
    assert run_in_process(f"resume={run_dir}", "trainer.epochs=2", cwd=offline) == 0
    model, _, state = load_trained(str(run_dir), torch.device("cpu"))
    assert state["progress"]["epoch"] == 2
    assert_same_state(model.state_dict(), state["model"])
