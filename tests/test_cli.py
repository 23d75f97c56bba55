"""The entrypoint as users run it: real Hydra, real TensorBoard files; a real process where
exit messages matter, in-process (the same entrypoint) where a run is only looked at."""

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cifar_exp.hydra_setup import run_name
from cifar_exp.models import MODELS
from cifar_exp.records.naming import MAX_DIRNAME
from cifar_exp.tracking import (
    EPOCH_TAGS,
    LAYOUT_TAG,
    STEP_GRAD_NORM_TAG,
    STEP_LOSS_TAG,
    STEP_LR_TAG,
)
from helpers.cli import output_in_process, run_in_process
from helpers.compare import strip_timing
from helpers.events import hparams_session, load_events
from helpers.outputs import manifest
from helpers.overrides import TINY, TINY_TRAINER

# Models whose whole tiny epoch takes about a second; the others train two steps.
CHEAP = ("lenet5", "resnet", "resnet20", "airbench")
# The large ones at a fraction of their size (their full size is built in test_models.py):
# the same code trains, in a second rather than a minute (WRN-28-10's two steps: 70 s).
SHRUNK = {
    "wrn": {"depth": 10, "widen_factor": 1},
    "densenet_bc": {"depth": 10},
    "preact_resnet18": {"width": 8},
    "resnet18": {"width": 8},
    "vgg": {"width": 8},
    "mobilenetv2": {"width_mult": 0.25},
    "airbench": {"widths": [16, 32, 32]},
}


@pytest.mark.parametrize("model", MODELS.names())
def test_one_tiny_epoch_per_model_logs_tensorboard_and_metrics(tmp_path, model):
    run_dir = tmp_path / "run"
    shrunk = SHRUNK.get(model, {})
    overrides = [*TINY, f"model={model}", f"hydra.run.dir={run_dir}"]
    overrides += [f"model.{key}={value}".replace(" ", "") for key, value in shrunk.items()]
    if model not in CHEAP:  # two steps and one evaluation batch show that it trains
        overrides += [
            "trainer.limit_train_batches=2",
            "trainer.eval_batch_size=32",
            "trainer.limit_eval_batches=1",
        ]
    assert run_in_process(*overrides, cwd=tmp_path) == 0

    acc = load_events(run_dir)
    tags = set(acc.Tags()["scalars"])
    # compile_s only when compiled; init_s only for a model initialized from the data;
    # grad_clipped_share only when trainer.grad_clip clips.
    optional = ("compile_s", "grad_clipped_share") + (() if model == "airbench" else ("init_s",))
    per_epoch = {tag for key, tag in EPOCH_TAGS.items() if key not in optional}
    no_val_split = {tag for tag in per_epoch if not tag.startswith("val/")}
    expected = no_val_split | {STEP_LOSS_TAG, STEP_LR_TAG, STEP_GRAD_NORM_TAG}
    assert expected <= tags, expected - tags
    # Curves only: final numbers and the parameter count live in HParams and metrics.json.
    assert not [tag for tag in tags if tag.startswith(("final/", "model/"))]
    for tag in expected:
        assert all(math.isfinite(e.value) for e in acc.Scalars(tag)), tag
    assert [e.step for e in acc.Scalars("test/acc")] == [1]
    hparams, status = hparams_session(run_dir)
    with torch.device("meta"):
        net = MODELS.build({"name": model, **shrunk}).eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            net(torch.zeros(1, 3, 32, 32))
    assert hparams["model.params"] == sum(p.numel() for p in net.parameters())
    assert hparams["model.flops"] == counter.get_total_flops()
    assert (hparams["model.name"], status) == (model, "STATUS_SUCCESS")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == model
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    assert metrics["final"]["test_acc"] == pytest.approx(acc.Scalars("test/acc")[-1].value)
    assert 0 <= metrics["final"]["test_acc"] <= 1
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count(f"model={model}") == 1
    assert "final test accuracy" in (run_dir / "run.log").read_text()


def test_hparams_text_and_layout_are_recorded_for_tensorboard(tmp_path):
    run_dir = tmp_path / "run"
    typed = ["optimizer=sgd", "optimizer.lr=0.05", "augment.flip=true", "dataset.noise=30"]
    assert run_in_process(*TINY, *typed, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    hparams, status = hparams_session(run_dir)
    assert status == "STATUS_SUCCESS"
    # Typed values: strings, numbers, booleans as booleans; keys typed, then the curated set.
    assert hparams["optimizer.name"] == "sgd" and hparams["optimizer.lr"] == pytest.approx(0.05)
    assert hparams["augment.flip"] is True and hparams["dataset.noise"] == 30
    assert hparams["model.params"] == 62006 and hparams["trainer.epochs"] == 1
    assert hparams["model.flops"] == 1_303_440  # docs/models.md: 1.30M
    # No unset values ("None") and no plumbing (paths, threads, progress bar, resume).
    for key in ("trainer.limit_train_batches", "trainer.num_threads", "resume", "device.type"):
        assert key not in hparams

    acc = load_events(run_dir)
    texts = {
        tag.split("/")[1]: acc.Tensors(tag)[0].tensor_proto.string_val[0].decode()
        for tag in acc.Tags()["tensors"]
        if tag.startswith("run/")
    }
    assert "    optimizer:\n      name: sgd\n      lr: 0.05" in texts["config"]
    assert texts["overrides"].splitlines() == [f"    {o}" for o in [*TINY, *typed]]
    assert texts["command"]  # this process's; test_tensorboard reads a real launch's
    assert len(texts["git_commit"].split("+")[0].strip()) == 40  # the tests run from a checkout
    assert [e.step for e in acc.Tensors(LAYOUT_TAG)] == [0]


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    def final(seed, name):
        run_dir = tmp_path / name
        overrides = ["trainer.epochs=2", f"trainer.seed={seed}", f"hydra.run.dir={run_dir}"]
        assert run_in_process(*TINY, *overrides, cwd=tmp_path) == 0
        return json.loads((run_dir / "metrics.json").read_text())

    a, b, c = final(0, "a"), final(0, "b"), final(1, "c")
    assert strip_timing(a) == strip_timing(b)
    assert strip_timing(a) != strip_timing(c)


def test_training_learns_learnable_data(tmp_path):
    """Noisy-pattern synthetic data: three epochs of LeNet5 must beat chance (10%) by far."""
    run_dir = tmp_path / "run"
    overrides = ["dataset.train_size=1000", "dataset.noise=120", "trainer.epochs=3"]
    assert run_in_process(*TINY, *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"]["test_acc"] > 0.6
    losses = [e["train_loss"] for e in metrics["epochs"]]
    assert losses[-1] < losses[0]


def test_a_run_refused_before_training_adds_no_tensorboard_run_and_can_be_replaced(tmp_path):
    """It said why and exited 1, and has no curves: no empty entry in TensorBoard's lists (a
    sweep's refused job is listed as failed: test_tensorboard.py). Its manifest says failed."""
    run_dir = tmp_path / "run"
    refused = run_in_process(*TINY, "optimizer.lr=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert refused == 1
    assert manifest(run_dir)["status"] == "failed"
    assert not list(run_dir.glob("events.out.tfevents.*"))
    # The folder held nothing worth keeping: a new run may start there.
    assert run_in_process(*TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    hparams, status = hparams_session(run_dir)
    assert (hparams["optimizer.lr"], status) == (0.001, "STATUS_SUCCESS")


@pytest.mark.parametrize(
    "name, overrides, expected",
    [
        (
            None,
            ["model=resnet", "device=cpu", "optimizer.lr=3e-3"],
            "model-resnet+optimizer.lr-3e-3",
        ),
        (None, ["+model.sizes=[1,2]", "augment.mean=null"], "+model.sizes--1-2-+augment.mean-null"),
        (None, ["trainer.num_threads=1", "dataset.root=/data", "resume=x"], "defaults"),
        ("lr sweep/a=1", ["optimizer.lr=0.1"], "lr-sweep-a-1"),
        ("x" * 300, [], "x" * MAX_DIRNAME),
    ],
)
def test_run_name_says_what_the_run_is(name, overrides, expected):
    assert run_name(name, overrides) == expected


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=resnet99"], "Could not find 'model/resnet99'"),
        (["trainer.epoch=5"], "Key 'epoch' not in 'TrainerConfig'"),
        (["trainer.batch_size=0"], "trainer.batch_size must be >= 1, got 0"),
        (["optimizer.lr=-1"], "optimizer.lr must be > 0"),
        (["model=resnet20", "model.width=abc"], "'abc' of type 'str' could not be converted"),
        (["model=resnet20", "model.width=abc"], "full_key: model.width"),
        (["model=resnet20", "model.width=-3"], "model.width must be >= 1, got -3"),
        (["optimizer=rmsprop", "optimizer.alpha=1"], "optimizer.alpha must be in [0, 1), got 1.0"),
        (
            ["model=resnet50"],
            "error: model=resnet50 is not an option of the model group; resnet50 is a timm "
            "network: model=timm model.arch=resnet50",
        ),
        (
            ["model=mobilenet_v3_small"],
            "mobilenet_v3_small is a torchvision network: model=torchvision "
            "model.arch=mobilenet_v3_small",
        ),
        (["model=timm", "model.arch=efficientnet_bo"], "(closest: efficientnet_b0, "),
        (
            ["name=café"],
            "error: name=café: Hydra's override grammar takes non-ASCII characters only in "
            """quotes; write 'name="café"'""",
        ),
    ],
)
def test_bad_inputs_exit_nonzero_with_a_clear_message(tmp_path, overrides, message):
    code, output = output_in_process(
        *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code == 1
    assert message in output
    assert "Traceback" not in output


def test_missing_cifar10_offline_exits_nonzero_and_says_how_to_fix(tmp_path):
    code, output = output_in_process(
        *TINY_TRAINER,
        "dataset.root=nowhere",
        "dataset.download=false",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert code != 0
    assert f"CIFAR-10 is not in {tmp_path / 'nowhere'}" in output  # relative to the launch folder
    assert "Traceback" not in output


def test_an_image_folder_as_cifar10s_root_says_to_read_it_as_one(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "images" / split / "cat").mkdir(parents=True)
    code, output = output_in_process(
        *TINY_TRAINER, "dataset.root=images", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code == 1 and "Traceback" not in output
    assert f"{tmp_path / 'images'} is an image folder (train/ and test/), not CIFAR-10's " in output
    assert "add dataset=imagefolder to read it" in output
    assert not list((tmp_path / "images").glob("*.tar.gz"))  # nothing downloaded into it


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_an_error_not_a_fallback(tmp_path):
    code, output = output_in_process(
        *TINY, "device=cuda", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert code != 0
    assert "device=cuda was asked for but no CUDA GPU is available" in output


def test_help_starts_with_the_ways_in_without_cifar10_or_a_network(tmp_path, compose):
    help_text = output_in_process("--help", cwd=tmp_path)[1]
    start = help_text[help_text.index("Start with:") : help_text.index("Outputs: ")]
    examples = [
        line.split("#")[0].split()[3:]
        for line in start.splitlines()
        if line.strip().startswith("python -m cifar_exp.run")
    ]
    for ways_in in (
        ["debug=tiny"],
        ["dataset=synthetic"],
        ["dataset=imagefolder", "dataset.root=<folder>"],
        ["dataset.root=<folder>", "dataset.download=false"],  # offline, CIFAR-10 on disk
    ):
        assert ways_in in examples
    assert "cifar-10-batches-py/ or cifar-10-python.tar.gz" in start
    assert "data/, or $CIFAR_EXP_DATA" in start
    # Each single-run example composes as written (with a folder for <folder>).
    for overrides in examples:
        if "-m" not in overrides:
            compose([o.replace("<folder>", str(tmp_path)) for o in overrides])
