"""Calibration, top-5 and per-class scores (components/calibration.py, eval.py), checked
against torchmetrics on the same predictions, and as a trained run and `eval` report them."""

from __future__ import annotations

import json

import pytest
import torch

from cifar_exp.components import calibration
from cifar_exp.eval import macro_averages, per_class_scores
from helpers.cli import output_in_process
from helpers.overrides import TINY
from helpers.runs import trained

tm = pytest.importorskip("torchmetrics.functional.classification")


def predictions(n: int = 1000, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits from sharp to flat (some softmax confidences exactly 1.0), labels agreeing often."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(classes, (n,), generator=generator)
    logits = torch.randn(n, classes, generator=generator)
    logits[torch.arange(n), labels] += torch.rand(n, generator=generator) * 6
    logits[:20] *= 40  # saturated: a confidence of 1.0 in float32
    return logits, labels


def summed(logits: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return sum(
        calibration.batch_sums(logits[i : i + batch], labels[i : i + batch])
        for i in range(0, len(labels), batch)
    )


@pytest.mark.parametrize("classes", [10, 100])
def test_ece_brier_and_top5_over_batches_match_torchmetrics(classes):
    logits, labels = predictions(classes=classes)
    assert (logits.softmax(1).max(1).values == 1.0).any()
    scores = calibration.scores(summed(logits, labels), len(labels), classes)
    expected_ece = tm.multiclass_calibration_error(logits, labels, classes, n_bins=15, norm="l1")
    assert scores["ece"] == pytest.approx(float(expected_ece), abs=1e-6)
    probs = logits.softmax(1)
    brier = (probs - torch.nn.functional.one_hot(labels, classes)).square().sum(1).mean()
    assert scores["brier"] == pytest.approx(float(brier), rel=1e-5)
    top5 = tm.multiclass_accuracy(logits, labels, classes, top_k=5, average="micro")
    assert scores["top5_acc"] == pytest.approx(float(top5), abs=1e-6)


def test_no_top5_with_five_classes_or_fewer_and_bins_hold_every_image():
    logits, labels = predictions(classes=5)
    sums = summed(logits, labels)
    assert "top5_acc" not in calibration.scores(sums, len(labels), 5)
    bins = calibration.reliability(sums)
    assert sum(b["images"] for b in bins) == len(labels)
    assert all(0 <= b["low"] < b["high"] <= 1 and b["low"] <= b["confidence"] for b in bins)


def test_per_class_precision_recall_f1_match_torchmetrics():
    logits, labels = predictions()
    predicted = logits.argmax(1)
    matrix = torch.bincount(labels * 10 + predicted, minlength=100).view(10, 10)
    names = [f"c{i}" for i in range(10)]
    rows = per_class_scores(matrix, names)
    for key, metric in (
        ("precision", tm.multiclass_precision),
        ("recall", tm.multiclass_recall),
        ("f1", tm.multiclass_f1_score),
    ):
        per_class = metric(predicted, labels, 10, average=None).tolist()
        assert [rows[n][key] for n in names] == pytest.approx(per_class, abs=1e-6)
        macro = float(metric(predicted, labels, 10, average="macro"))
        assert macro_averages(rows)[f"macro_{key}"] == pytest.approx(macro, abs=1e-6)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("calibrated"), *TINY)


def test_a_run_records_its_test_ece_and_eval_reports_every_score(run, tmp_path):
    final = json.loads((run / "metrics.json").read_text())["final"]
    assert {"test_ece", "test_brier", "test_top5_acc"} <= final.keys()
    assert 0 <= final["test_ece"] <= 1 and 0 <= final["test_brier"] <= 2

    code, printed = output_in_process(
        f"ckpt={run}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, module="cifar_exp.eval"
    )
    assert code == 0, printed[-3000:]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["ece"] == pytest.approx(final["test_ece"])  # the same weights, the same split
    assert report["nll"] == report["loss"] == pytest.approx(final["test_loss"])
    assert {"top5_acc", "brier", "macro_precision", "macro_recall", "macro_f1"} <= report.keys()
    assert report["per_class"]["class_0"].keys() == {"precision", "recall", "f1", "images"}
    assert f"calibration: ECE {report['ece']:.4f} (15 equal-width bins)" in printed
    assert (tmp_path / "eval" / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fitted_temperature_undoes_a_known_overconfidence():
    generator = torch.Generator().manual_seed(1)
    true_logits = torch.randn(4000, 10, generator=generator) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=generator).squeeze(1)
    # Logits three times too sharp: temperature scaling should find T close to 3.
    assert calibration.fit_temperature(true_logits * 3, labels) == pytest.approx(3, rel=0.1)


@pytest.fixture(scope="module")
def run_with_val(tmp_path_factory):
    args = [*TINY, "dataset.val_size=64", "trainer.epochs=3"]
    return trained(tmp_path_factory.mktemp("with_val"), *args)


def test_eval_fits_a_temperature_on_the_validation_split_and_reports_both(run_with_val, tmp_path):
    out = tmp_path / "eval"
    code, printed = output_in_process(
        f"ckpt={run_with_val}",
        "calibrate=temperature",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        module="cifar_exp.eval",
    )
    assert code == 0, printed[-3000:]
    report = json.loads((out / "eval.json").read_text())
    fitted = report["temperature"]
    assert fitted["val_images"] == 64 and fitted["value"] > 0
    assert report["ece"] < fitted["before"]["ece"]  # this tiny model is badly calibrated
    assert report["acc"] == fitted["before"]["acc"]  # a temperature never changes the argmax
    assert f"temperature {fitted['value']:.4f} (fitted on 64 validation images): ECE " in printed


def test_a_temperature_without_a_validation_split_is_refused_in_one_line(run, tmp_path):
    code, printed = output_in_process(
        f"ckpt={run}",
        "calibrate=temperature",
        f"hydra.run.dir={tmp_path / 'e'}",
        cwd=tmp_path,
        module="cifar_exp.eval",
    )
    assert code == 1 and "Traceback" not in printed
    assert (
        "calibrate=temperature fits on the validation split, and this run held none out" in printed
    )
