"""The benchmark scripts run (tiny dry runs on the CPU) and report what they promise.

They measure nothing here: the figures come from real runs, see the README.
"""

import importlib
import json
import subprocess
import sys

import pytest
import torch

from helpers.paths import CIFAR10_JPEG, REPO


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


needs_cifar10 = pytest.mark.skipif(
    not (CIFAR10_JPEG / "train").is_dir(), reason=f"no CIFAR-10 JPEG copy at {CIFAR10_JPEG}"
)


def time_to_accuracy(*args, cwd, root=CIFAR10_JPEG):
    """bench_time_to_accuracy.py on 200 training and 100 test images, one thread."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_time_to_accuracy.py"),
            *("--root", str(root), "--limit-train", "200", "--limit-test", "100"),
            *("--threads", "1", *args),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_cifar10
def test_time_to_accuracy_table_skips_an_unknown_experiment(tmp_path):
    proc = time_to_accuracy(
        *("--post-epochs", "2", "--post-resnet-epochs", "1"),
        *("--experiments", "no_such_preset", "seed_lenet5", "--override", "trainer.epochs=2"),
        *("--thresholds", "0.01", "0.99", "--json", "tta.json"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    unknown = [ln for ln in proc.stderr.splitlines() if "no_such_preset" in ln]
    assert len(unknown) == 1 and "unknown experiment no_such_preset" in unknown[0]
    result = json.loads((tmp_path / "tta.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["post's loop, lenet5", "post's loop, resnet", "cifar-exp seed_lenet5"]
    for row, epochs in zip(rows.values(), (2, 1, 2), strict=True):
        assert row["epochs"] == epochs == len(row["epoch_s"]) == len(row["test_acc"])
        assert all(s > 0 for s in row["epoch_s"]) and 0 < row["final_acc"] <= 1
        # Any accuracy reaches 1% after the first epoch; 99% is out of reach of 200 images.
        assert row["time_to_s"] == {"0.01": row["epoch_s"][0], "0.99": None}
    fastest_post = min(r["epoch_s"][0] for r in list(rows.values())[:2])
    assert result["baseline_s"] == {"0.01": fastest_post, "0.99": None}
    project = rows["cifar-exp seed_lenet5"]
    assert project["speedup"]["0.01"] == pytest.approx(fastest_post / project["epoch_s"][0])
    assert project["clock"].startswith("train/train_s")
    assert result["cpu"]["model"] and result["failed"] == []
    assert "| contender | 1% | 99% | final acc | epochs |" in proc.stdout
    assert "| cifar-exp seed_lenet5 | " in proc.stdout and "x) | — |" in proc.stdout


@pytest.mark.slow
@needs_cifar10
def test_time_to_accuracy_reports_a_failed_run_and_goes_on(tmp_path):
    proc = time_to_accuracy(
        *("--post-epochs", "0", "--post-resnet-epochs", "0", "--experiments", "seed_lenet5"),
        *("--override", "trainer.epochs=-1", "--json", "tta.json"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    line = "experiment seed_lenet5 failed (exit 1): trainer.epochs must be >= 0, got -1"
    assert line in proc.stderr
    assert json.loads((tmp_path / "tta.json").read_text())["failed"] == [line]


@pytest.fixture
def bench_tta(monkeypatch):
    """scripts/bench_time_to_accuracy.py imported: its argument checks run in this process,
    sparing each case the seconds a fresh process spends importing torch."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    return importlib.import_module("bench_time_to_accuracy")


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
    bench_tta, tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_time_to_accuracy.py", "--root", ".", *args])
    with pytest.raises(SystemExit) as exit_:
        bench_tta.parse_args()
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error, error
    assert list(tmp_path.iterdir()) == []


@needs_cifar10
def test_time_to_accuracy_needs_an_image_per_class(bench_tta, tmp_path):
    with pytest.raises(bench_tta.UserError, match="--limit-train 5 is fewer than one image per"):
        bench_tta.subset_folder(CIFAR10_JPEG, tmp_path, {"train": 5, "test": None})


def test_augment_benchmark_dry_run(tmp_path):
    proc = run_script("bench_augment.py", "--threads", "1", "--json", "augment.json", cwd=tmp_path)
    result = json.loads((tmp_path / "augment.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[0] == "resnet20 step" and {"autoaugment", "randaugment", "trivialaugment"} < set(
        names
    )
    assert result["rows"][0]["epoch_share"] is None
    assert all(0 < r["epoch_share"] < 1 for r in result["rows"][1:])
    assert "share of a resnet20 epoch" in proc.stdout


@pytest.mark.slow
def test_cpu_benchmark_of_the_gradient_norm_dry_run(tmp_path):
    run_script(
        "bench_cpu.py", "--grad-norm", "--models", "lenet5", "--json", "n.json", cwd=tmp_path
    )
    rows = json.loads((tmp_path / "n.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "fp32+grad_norm"]
    assert all(r["images_per_s"] > 0 for r in rows)


@pytest.mark.slow
def test_accumulation_memory_benchmark_dry_run(tmp_path):
    proc = run_script("bench_accumulate.py", "--json", "acc.json", cwd=tmp_path)
    rows = json.loads((tmp_path / "acc.json").read_text())["rows"]
    assert [(r["accumulate_grad_batches"], r["micro_batch"]) for r in rows] == [(1, 8), (4, 2)]
    assert all(r["peak_rss_mb"] >= r["rss_after_build_mb"] > 0 for r in rows)
    assert "| 4 | 2 |" in proc.stdout


@pytest.mark.slow
def test_search_benchmark_dry_run(tmp_path):
    """bench_search.py on synthetic data: both searches run and the table has a row each."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_search.py"), "--trials", "1"]
        + ["--epochs", "1", "--model", "lenet5", "--val-size", "64", "--threads", "1"]
        + ["--out", str(tmp_path / "bench"), "--json", str(tmp_path / "search.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| none", "| median (default)"]
    assert all(" | 1 | 1.0 | 1.00x | 0.0 | " in row for row in rows[1:])
    results = json.loads((tmp_path / "search.json").read_text())["results"]
    assert [(r["pruner"], r["epochs"], r["pruned"]) for r in results] == [
        ("none", 1, 0),
        ("median", 1, 0),
    ]


def image_folder(root, train_per_class, test_per_class, classes=10):
    """A CIFAR-shaped ImageFolder of random 32x32 PNGs: the data the race's dry run needs."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            pixels = torch.randint(0, 256, (count, 32, 32, 3), generator=gen, dtype=torch.uint8)
            for i, image in enumerate(pixels.numpy()):
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path):
    """gpu_check.py --dry-run: the CPU's share of the CUDA paths, bench_gpu.py --dry-run and a
    one-seed airbench race (cifar-exp's speedrun94 against airbench94's own code), written
    as one JSON and one markdown table that say they are no GPU figures."""
    root = image_folder(tmp_path / "images", 103, 20)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run"]
        + ["--root", str(root), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=2400,  # about a minute on 2 idle cores; far longer on a crowded machine
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["dry_run"] and result["device"].startswith("CPU (dry run")
    assert [p["path"] for p in result["paths"]] == [
        "gloo, 1 process (torchrun)",
        "bf16 + channels_last + on_device",
    ]
    assert all(p["ok"] for p in result["paths"]), result["paths"]
    assert len(result["skipped_paths"]) == 2
    assert result["bench_gpu"]["exit"] == 0 and "| lenet5 | bf16 |" in result["bench_gpu"]["table"]
    groups = {g["contender"]: g for g in result["race"]["groups"]}
    assert set(groups) == {"speedrun94", "airbench94"} and result["race"]["exit"] == 0
    for group in groups.values():
        assert group["runs"] == 1 and 0 <= group["final_acc"]["mean"] <= 1
        assert group["clock_s"]["mean"] > 0
    assert groups["airbench94"]["clock_ratio"] == 1.0
    assert "device and precision changed only" in result["race"]["airbench94"]
    page = (tmp_path / "out" / "gpu_check.md").read_text()
    assert page.startswith("# GPU check (dry run on a CPU)")
    for heading in ("## CUDA paths", "## Throughput", "## The airbench race"):
        assert heading in page
    assert "| speedrun94 | 1 |" in page and "| airbench94 | 1 |" in page


def test_epoch_bench_times_three_loops_alternating(tmp_path):
    """bench_epoch_vs_airbench.py --dry-run: cifar-exp's Trainer.epoch, the bare loop on its
    parts and airbench94's own loop each time one epoch, on the same random images."""
    root = image_folder(tmp_path / "images", 103, 20)
    proc = run_script(
        "bench_epoch_vs_airbench.py", "--root", str(root), "--json", "e.json", cwd=tmp_path
    )
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["dry_run"] and result["widths"] == [8, 16, 16] and result["rounds"] == 1
    assert result["images_per_epoch"] == 1024  # 1,030 images, the last partial batch dropped
    rows = {r["loop"]: r for r in result["rows"]}
    assert list(rows) == ["Trainer.epoch", "bare loop", "airbench94"]
    for row in rows.values():
        assert len(row["seconds"]) == 1 and row["median_s"] > 0
        assert row["images_per_s"] == pytest.approx(1024 / row["median_s"], rel=0.05)
    assert rows["airbench94"]["vs_airbench94"] == 1.0
    assert "device and precision changed only" in result["airbench94"]
    assert "| Trainer.epoch | " in proc.stdout and "| airbench94 | " in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds", "0"], "--rounds must be >= 1, not 0"),
        (["--widths", "8", "0", "16"], "--widths must be positive"),
        (["--root", "nowhere"], "no image folder at "),
    ],
)
def test_epoch_bench_refuses_bad_arguments(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    bench = importlib.import_module("bench_epoch_vs_airbench")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train").mkdir(), (tmp_path / "test").mkdir()
    monkeypatch.setattr(sys, "argv", ["bench_epoch_vs_airbench.py", "--root", ".", *args])
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args()
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error, error
