"""The benchmark scripts run (tiny dry runs on the CPU) and report what they promise, each
inside this process: its main() or its argument checks, as `python scripts/bench/<name>.py`
runs them. The scripts that start processes of their own are run in
tests/integration/test_bench_script_runs.py.

They measure nothing here: the figures come from real runs, see docs/benchmarks.md.
"""

import json
import sys

import pytest

from helpers.bench import run_main
from helpers.paths import CIFAR10_JPEG


def test_gpu_benchmark_dry_run_on_cpu(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_main(bench("gpu"), "--dry-run", "--json", "gpu.json", monkeypatch=monkeypatch)
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["device"] == "CPU (dry run)"
    variants = ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    assert [(r["model"], r["variant"]) for r in result["rows"]] == [
        (m, v) for m in ("lenet5", "resnet20") for v in variants
    ]
    for row in result["rows"]:
        assert row["images_per_s"] > 0 and row["min"] <= row["images_per_s"] <= row["max"]
    assert [r["ratio"] for r in result["rows"] if r["variant"] == "fp32"] == [1.0, 1.0]
    (fp32_epochs, *_) = result["epochs"]
    assert fp32_epochs["model"] == "lenet5" and len(fp32_epochs["epoch_s"]) == 2
    assert "| lenet5 | bf16+channels_last |" in capsys.readouterr().out


@pytest.mark.slow
def test_cpu_benchmark_dry_run(bench, tmp_path, monkeypatch, capsys):
    airbench = "airbench:widths=[8,16,16]"
    monkeypatch.chdir(tmp_path)
    args = ("--dry-run", "--models", "lenet5", airbench, "--json", "cpu.json")
    run_main(bench("cpu"), *args, monkeypatch=monkeypatch)
    rows = json.loads((tmp_path / "cpu.json").read_text())["rows"]
    variants = ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        (m, v) for m in ("lenet5", airbench) for v in variants
    ]
    assert rows[0]["ratio"] == 1.0 and all(r["images_per_s"] > 0 for r in rows)
    assert "bf16/AMX flags" in capsys.readouterr().out


def test_cpu_benchmark_refuses_a_bad_model_option_in_one_line(bench, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main(bench("cpu"), "--models", "airbench:widths=[0]", monkeypatch=monkeypatch)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--models airbench:widths=[0]: model.widths must be three positive integers" in error


@pytest.mark.slow
def test_cpu_benchmark_of_the_gradient_norm_dry_run(bench, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("--dry-run", "--grad-norm", "--models", "lenet5", "--json", "n.json")
    run_main(bench("cpu"), *args, monkeypatch=monkeypatch)
    rows = json.loads((tmp_path / "n.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "fp32+grad_norm"]
    assert all(r["images_per_s"] > 0 for r in rows)


needs_cifar10 = pytest.mark.skipif(
    not (CIFAR10_JPEG / "train").is_dir(), reason=f"no CIFAR-10 JPEG copy at {CIFAR10_JPEG}"
)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--override", "trainer.epochs"], "--override 'trainer.epochs' is not KEY=VALUE"),
        (["--override", "trainer.eval_every=2"], "--override 'trainer.eval_every=2': the bench"),
        (["--json", "missing/tta.json"], "--json missing/tta.json: folder"),
        (["--thresholds", "60"], "--thresholds are fractions in (0, 1]"),
        (["--post-epochs", "-1"], "--post-epochs must be >= 0, not -1"),
        (["--limit-train", "0"], "--limit-train must be >= 1, not 0"),
        (["--root", "nowhere"], "no image folder at "),
    ],
)
def test_time_to_accuracy_refuses_bad_arguments(
    bench, tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["scripts/bench/time_to_accuracy.py", "--root", ".", *args])
    with pytest.raises(SystemExit) as exit_:
        bench("time_to_accuracy").parse_args()
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error, error
    assert list(tmp_path.iterdir()) == []


@needs_cifar10
def test_time_to_accuracy_needs_an_image_per_class(bench, tmp_path):
    tta = bench("time_to_accuracy")
    with pytest.raises(tta.UserError, match="--limit-train 5 is fewer than one image per"):
        tta.subset_folder(CIFAR10_JPEG, tmp_path, {"train": 5, "test": None})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds", "0"], "--rounds must be >= 1, not 0"),
        (["--widths", "8", "0", "16"], "--widths must be positive"),
        (["--root", "nowhere"], "no image folder at "),
    ],
)
def test_epoch_bench_refuses_bad_arguments(bench, tmp_path, monkeypatch, capsys, args, message):
    epoch_bench = bench("epoch_vs_airbench")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").mkdir(), (tmp_path / "test").mkdir()
    argv = ["scripts/bench/epoch_vs_airbench.py", "--root", ".", *args]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        epoch_bench.parse_args()
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error, error


def test_startup_bench_refuses_no_rounds_and_an_unknown_baseline(
    bench, tmp_path, monkeypatch, capsys
):
    startup = bench("startup")
    monkeypatch.setattr(sys, "argv", ["scripts/bench/startup.py", "--rounds", "0"])
    with pytest.raises(SystemExit) as exit_:
        startup.parse_args()
    assert exit_.value.code == 2
    assert "--rounds must be >= 1, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--baseline no-such-commit: "):
        startup.baseline_src("no-such-commit", tmp_path)


def test_layer_profile_splits_a_runs_step_into_its_layers(bench, tmp_path, monkeypatch, capsys):
    """layers.py on a tiny airbench run: every leaf layer timed on its input, no input
    gradient for the first one (its input is the images), and the split adds up to the step."""
    config = "experiment=speedrun94 model.widths=[4,8,8] trainer.batch_size=8"
    muon = "experiment=speedrun94_muon model.widths=[4,8,8] trainer.batch_size=8"
    args = ("--repeats", "1", "--threads", "1", "--json", str(tmp_path / "layers.json"))
    run_main(bench("layers"), config, muon, *args, monkeypatch=monkeypatch)
    profile, muon_profile = json.loads((tmp_path / "layers.json").read_text())["profiles"]
    assert profile["config"] == config and profile["batch_size"] == 8
    assert not profile["compiled"] and muon_profile["optimizer_s"] > profile["optimizer_s"]
    layers = {r["layer"]: r for r in profile["layers"]}
    assert layers["whiten"]["input_grad_s"] is None and layers["whiten"]["forward_s"] > 0
    assert layers["blocks.0.0"]["type"] == "Conv2d" and layers["blocks.0.0"]["input_grad_s"] > 0
    assert layers["blocks.0.2"]["type"] == "BatchNorm2d" and layers["blocks.0.2"]["backward_s"]
    assert layers["head"]["shape"] == [8, 10]
    assert sum(profile["shares"].values()) == pytest.approx(profile["step_s"])
    out = capsys.readouterr().out
    assert "| `blocks.2.4` | Conv2d | 8x3x3 |" in out
    ratio = muon_profile["step_s"] / profile["step_s"]
    assert (
        f"| `{muon}` | {muon_profile['step_s'] * 1000:,.1f} |" in out and f"{ratio:.2f}x |" in out
    )


def test_layer_profile_refuses_a_bad_override_in_one_line(bench, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_main(bench("layers"), "model=nosuchnet", monkeypatch=monkeypatch)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'model=nosuchnet': " in error, error
