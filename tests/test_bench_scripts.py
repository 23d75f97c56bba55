"""The benchmark scripts run (tiny dry runs on the CPU) and report what they promise.

They measure nothing here: the figures come from real runs, see the README.
"""

import json
import subprocess
import sys

import pytest
from conftest import REPO


def run_script(name, *args, cwd):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), "--dry-run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_gpu_benchmark_dry_run_on_cpu(tmp_path):
    proc = run_script("bench_gpu.py", "--json", "gpu.json", cwd=tmp_path)
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
    assert "| lenet5 | bf16+channels_last |" in proc.stdout


@pytest.mark.slow
def test_cpu_benchmark_dry_run(tmp_path):
    airbench = "airbench:widths=[8,16,16]"
    proc = run_script(
        "bench_cpu.py", "--models", "lenet5", airbench, "--json", "cpu.json", cwd=tmp_path
    )
    rows = json.loads((tmp_path / "cpu.json").read_text())["rows"]
    variants = ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        (m, v) for m in ("lenet5", airbench) for v in variants
    ]
    assert rows[0]["ratio"] == 1.0 and all(r["images_per_s"] > 0 for r in rows)
    assert "bf16/AMX flags" in proc.stdout


def test_cpu_benchmark_refuses_a_bad_model_option_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_cpu.py"), "--models", "airbench:widths=[0]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    expected = "--models airbench:widths=[0]: model.widths must be three positive integers"
    assert expected in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_torchrun_stress_script_counts_its_launches(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stress_torchrun.py"), "--rounds", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 of 2 launches exited 0" in proc.stdout


def test_dashboard_benchmark_dry_run(tmp_path):
    proc = run_script("bench_dashboard.py", "--threads", "1", "--repeats", "2", cwd=tmp_path)
    for part in ("gathering confusion + mistakes", "confusion-matrix figure", "once per run"):
        assert f"| {part}" in proc.stdout, proc.stdout
    assert "end to end, one epoch (median wall_s of 1 runs each)" in proc.stdout
