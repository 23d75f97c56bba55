"""`python -m cifar_exp.model_summary`: the model a run's overrides describe, layer by layer,
from the dataset's options alone; the entrypoint run in process, real Hydra composition."""

import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cifar_exp.errors import UserError
from cifar_exp.model_summary import print_model_summary
from cifar_exp.models import MODELS
from cifar_exp.models.stats import activation_memory
from helpers.cli import output_in_process

SUMMARY = "cifar_exp.model_summary"


def inspected(tmp_path: Path, *overrides: str) -> tuple[dict, str]:
    out = tmp_path / "model_summary"
    code, output = output_in_process(
        *overrides, f"hydra.run.dir={out}", cwd=tmp_path, module=SUMMARY
    )
    assert code == 0, output[-3000:]
    return json.loads((out / "model_summary.json").read_text()), output


def test_the_table_of_a_wrn_adds_up_to_the_registry_and_flop_counter(tmp_path):
    """CIFAR-10 is the data set, but its folder does not exist: nothing is read."""
    model = {"name": "wrn", "depth": 16, "widen_factor": 2, "num_classes": 10}
    summary, printed = inspected(
        tmp_path,
        "model=wrn",
        "model.depth=16",
        "model.widen_factor=2",
        f"dataset.root={tmp_path / 'no-such-folder'}",
        "dataset.download=false",
        "device=cpu",
        "trainer.num_threads=1",
        "trainer.batch_size=4",
    )
    net = MODELS.build(model)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:  # on the CPU, with weights: another path than the meta one
        net.eval()(torch.rand(1, 3, 32, 32))
    params = sum(p.numel() for p in net.parameters())
    assert summary["trainable"] == params and summary["frozen"] == 0
    assert summary["flops"] == counter.get_total_flops() > 0
    assert summary["input_shape"] == [3, 32, 32]
    children = [layer for layer in summary["layers"] if layer["depth"] == 1]
    assert [layer["name"] for layer in children] == [n for n, _ in net.named_children()]
    # Every parameter and every counted operation sits in one of the model's children.
    assert sum(layer["trainable"] for layer in children) == params
    assert sum(layer["flops"] for layer in children) == summary["flops"]
    rows = {layer["name"]: layer for layer in summary["layers"]}
    assert rows["stem"]["output_shape"] == [[1, 16, 32, 32]]
    assert rows["fc"]["output_shape"] == [[1, 10]] and rows["fc"]["kind"] == "Linear"
    assert "groups.0" in rows and rows["groups.0"]["depth"] == 2  # model_summary.depth=2
    assert not [name for name in rows if name.count(".") > 1]
    memory = summary["activations"]
    assert memory["batch_size"] == 4 and memory["device"] == "cpu" and memory["saved_bytes"] > 0
    assert f"wrn: {params:,} parameters ({params:,} trainable, 0 frozen" in printed
    (total,) = [line for line in printed.splitlines() if line.startswith("total")]
    assert f"{params:,}" in total
    assert "activation memory of one training batch (4 images, cpu, fp32)" in printed


def test_the_input_shape_and_classes_come_from_the_dataset_options(tmp_path):
    """An image folder of three empty class folders: counted, no image read (there is none)."""
    for name in ("cat", "dog", "emu"):
        (tmp_path / "pics" / "train" / name).mkdir(parents=True)
    summary, _ = inspected(
        tmp_path,
        "dataset=imagefolder",
        f"dataset.root={tmp_path / 'pics'}",
        "dataset.image_size=64",
        "model=resnet20",
        "model_summary.depth=1",
        "model_summary.memory=false",
    )
    assert summary["input_shape"] == [3, 64, 64]
    assert summary["layers"][-1]["output_shape"] == [[1, 3]]
    assert summary["activations"] == {}
    assert all(layer["depth"] == 1 for layer in summary["layers"])


def test_saved_activations_grow_with_the_batch_and_leave_the_weights_out():
    torch.manual_seed(0)
    net = MODELS.build({"name": "lenet5", "num_classes": 10})
    saved = [
        activation_memory(net, (3, 32, 32), n, 10, torch.autocast("cpu", enabled=False))[
            "saved_bytes"
        ]
        for n in (4, 8, 12)
    ]
    per_4_images = saved[1] - saved[0]
    assert saved[2] - saved[1] == per_4_images > 0  # linear in the batch
    # What does not grow with the batch is a few scalars (the loss's), not LeNet5's 62,006
    # float32 weights (248 KB).
    assert 0 <= saved[0] - per_4_images < 64


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=wrn", "model.depht=16"], "Key 'depht' not in 'WideResNetOptions'"),
        (["trainer.batch_size=0"], "trainer.batch_size must be >= 1, got 0"),
    ],
)
def test_a_bad_override_is_the_runs_one_line_and_a_nonzero_exit(tmp_path, overrides, message):
    """The words test_cli.py checks the run's exit for."""
    out = tmp_path / "model_summary"
    code, output = output_in_process(
        *overrides, f"hydra.run.dir={out}", cwd=tmp_path, module=SUMMARY
    )
    assert code == 1
    assert message in output and "Traceback" not in output
    assert not (out / "model_summary.json").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model_summary.depth=0"], "model_summary.depth must be >= 1 (1: the model's children)"),
        (["resume=outputs/some-run"], "resume=outputs/some-run continues a run; the tools"),
        (["model=lenet5", "model.num_classes=5"], "model.num_classes=5 but the data set has 10"),
    ],
)
def test_what_model_summary_refuses_names_the_key(compose_tool, tmp_path, overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        print_model_summary(compose_tool("model_summary", overrides), tmp_path)
    assert not (tmp_path / "model_summary.json").exists()
