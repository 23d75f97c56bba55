"""`python -m cifar_exp.export`: each model family the tool trains exports to ONNX and passes
its own parity check (onnxruntime against the model); TorchScript and torch.export too; a
tampered file fails the check; bad inputs are one line. In process, on tiny runs."""

from __future__ import annotations

import json

import pytest

from cifar_exp import export
from helpers.cli import output_in_process
from helpers.overrides import TINY
from helpers.runs import trained

pytest.importorskip("onnxruntime", reason='the export tests need pip install -e ".[export]"')

MODELS = {
    "lenet5": [],
    "resnet20": ["model=resnet20", "model.width=4"],
    "airbench": ["model=airbench", "model.widths=[8,16,16]", "augment=airbench"],
    "wrn": ["model=wrn", "model.depth=10", "model.widen_factor=1"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {
        name: trained(tmp_path_factory.mktemp(name), *TINY, *overrides)
        for name, overrides in MODELS.items()
    }


def exported(run, tmp_path, *args):
    out = tmp_path / "export"
    code, printed = output_in_process(
        f"ckpt={run}", *args, f"hydra.run.dir={out}", cwd=tmp_path, module="cifar_exp.export"
    )
    return code, printed, out


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_family_exports_to_onnx_and_passes_its_check(runs, tmp_path, name):
    code, printed, out = exported(runs[name], tmp_path)
    assert code == 0, printed[-3000:]
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["check"]["passed"] and sidecar["check"]["top1_agree"] == 128  # all 128
    assert sidecar["check"]["max_logit_diff"] <= 1e-3
    assert sidecar["input_size"] == [3, 32, 32] and len(sidecar["classes"]) == 10
    assert "exported and checked: " in printed and (out / "model.onnx").stat().st_size > 0


@pytest.mark.parametrize("fmt", ["torchscript", "exported"])
def test_torchscript_and_torch_export_pass_their_check(runs, tmp_path, fmt):
    code, printed, out = exported(runs["lenet5"], tmp_path, f"format={fmt}")
    assert code == 0, printed[-3000:]
    assert (out / export.FILES[fmt]).is_file()
    assert json.loads((out / "model.json").read_text())["check"]["max_logit_diff"] == 0.0


def test_a_tampered_file_fails_the_check(runs, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    write = export.write

    def tampered(model, example, fmt, path):
        write(model, example, fmt, path)
        graph = onnx.load(str(path))
        weight = graph.graph.initializer[-1]  # the classifier's bias
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.5, weight.name))
        onnx.save(graph, str(path))

    monkeypatch.setattr(export, "write", tampered)
    code, printed, out = exported(runs["lenet5"], tmp_path)
    assert code == 1 and "Traceback" not in printed
    assert (
        "the export does not match the model: " in printed and "max |logit difference| 5" in printed
    )
    assert json.loads((out / "model.json").read_text())["check"]["passed"] is False


def test_an_unknown_format_is_one_line(runs, tmp_path):
    code, printed, _ = exported(runs["lenet5"], tmp_path, "format=tflite")
    assert code == 1 and "Traceback" not in printed
    assert "format" in printed and "onnx, torchscript, exported" in printed
