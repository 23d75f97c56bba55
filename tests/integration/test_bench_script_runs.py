"""The benchmark and check scripts that start processes of their own (runs of cifar_exp.run,
torchrun launches, a loader's worker, a child per setting), each run as a user runs it: in a
fresh process, as tiny dry runs on the CPU. tests/test_bench_scripts.py runs the others in
process.

They measure nothing here: the figures come from real runs, see docs/benchmarks.md.
"""

import importlib.util
import json
import subprocess
import sys

import pytest

from helpers.bench import run_main
from helpers.images import image_folder
from helpers.paths import CIFAR10_JPEG, REPO

SCRIPTS = REPO / "scripts"


def run_script(path, *args, cwd, timeout=600):
    """scripts/`path` with `args`, in a fresh process; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / path), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_torchrun_stress_script_counts_its_launches(tmp_path):
    proc = run_script("checks/stress_torchrun.py", "--rounds", "1", cwd=tmp_path)
    assert "2 of 2 launches exited 0" in proc.stdout


def test_dashboard_benchmark_dry_run(tmp_path):
    args = ("--dry-run", "--threads", "1", "--repeats", "2")
    proc = run_script("bench/dashboard.py", *args, cwd=tmp_path)
    for part in ("gathering confusion + mistakes", "confusion-matrix figure", "once per run"):
        assert f"| {part}" in proc.stdout, proc.stdout
    assert "end to end, one epoch (median wall_s of 1 runs each)" in proc.stdout


def test_augment_benchmark_dry_run(tmp_path):
    args = ("--dry-run", "--threads", "1", "--json", "augment.json")
    proc = run_script("bench/augment.py", *args, cwd=tmp_path)
    result = json.loads((tmp_path / "augment.json").read_text())
    names = [r["name"] for r in result["rows"]]
    assert names[0] == "resnet20 step" and {"autoaugment", "randaugment", "trivialaugment"} < set(
        names
    )
    assert result["rows"][0]["epoch_share"] is None
    assert all(0 < r["epoch_share"] < 1 for r in result["rows"][1:])
    assert "share of a resnet20 epoch" in proc.stdout


@pytest.mark.slow
def test_accumulation_memory_benchmark_dry_run(tmp_path):
    proc = run_script("bench/accumulate.py", "--dry-run", "--json", "acc.json", cwd=tmp_path)
    rows = json.loads((tmp_path / "acc.json").read_text())["rows"]
    assert [(r["accumulate_grad_batches"], r["micro_batch"]) for r in rows] == [(1, 8), (4, 2)]
    assert all(r["peak_rss_mb"] >= r["rss_after_build_mb"] > 0 for r in rows)
    assert "| 4 | 2 |" in proc.stdout


@pytest.mark.slow
def test_search_benchmark_dry_run(tmp_path):
    """search.py on synthetic data: both searches run and the table has a row each."""
    proc = run_script(
        "bench/search.py",
        *("--trials", "1", "--epochs", "1", "--model", "lenet5", "--val-size", "64"),
        *("--threads", "1", "--out", str(tmp_path / "bench")),
        *("--json", str(tmp_path / "search.json")),
        cwd=tmp_path,
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| none", "| median (default)"]
    assert all(" | 1 | 1.0 | 1.00x | 0.0 | " in row for row in rows[1:])
    results = json.loads((tmp_path / "search.json").read_text())["results"]
    assert [(r["pruner"], r["epochs"], r["pruned"]) for r in results] == [
        ("none", 1, 0),
        ("median", 1, 0),
    ]


needs_cifar10 = pytest.mark.skipif(
    not (CIFAR10_JPEG / "train").is_dir(), reason=f"no CIFAR-10 JPEG copy at {CIFAR10_JPEG}"
)


def time_to_accuracy(*args, cwd, root=CIFAR10_JPEG):
    """time_to_accuracy.py on 200 training and 100 test images, one thread."""
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "bench" / "time_to_accuracy.py"),
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


def load_renderer():
    spec = importlib.util.spec_from_file_location(
        "render_benchmarks", SCRIPTS / "docs" / "render_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path):
    """gpu_check.py --dry-run: the CPU's share of the CUDA paths, scripts/bench/gpu.py --dry-run
    and a one-seed airbench race (cifar-exp's speedrun94 and speedrun94_muon against
    airbench94's own code),
    written as one JSON and one markdown table that say they are no GPU figures; the JSON
    renders as the GPU check's section of docs/benchmarks.md."""
    root = image_folder(tmp_path / "images", 103, 20)
    run_script(
        "checks/gpu_check.py",
        *("--dry-run", "--root", str(root), "--out", str(tmp_path / "out")),
        cwd=tmp_path,
        timeout=2400,  # about a minute on 2 idle cores; far longer on a crowded machine
    )
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
    assert set(groups) == {"speedrun94", "speedrun94_muon", "airbench94"}
    assert result["race"]["exit"] == 0
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
    assert "| speedrun94_muon | 1 |" in page
    results = tmp_path / "results"
    results.mkdir()
    (results / "gpu_check-dry.json").write_text(json.dumps(result))
    rendered = load_renderer().render(results)
    section = rendered[rendered.index("## GPU check") : rendered.index("## Data loading")]
    assert "- **Dry run:**" in section and "| CUDA path | result | seconds |" in section
    assert "| speedrun94 | 1 |" in section and "| lenet5 | bf16 |" in section


def test_epoch_bench_times_three_loops_alternating(bench, tmp_path, monkeypatch, capsys):
    """epoch_vs_airbench.py --dry-run: cifar-exp's Trainer.epoch, the bare loop on its parts
    and airbench94's own loop each time one epoch, on the same random images (in process, but
    half a minute: three loops, each with its warm-up)."""
    root = image_folder(tmp_path / "images", 103, 20)
    monkeypatch.chdir(tmp_path)
    args = ("--dry-run", "--root", str(root), "--threads", "1", "--json", "e.json")
    run_main(bench("epoch_vs_airbench"), *args, monkeypatch=monkeypatch)
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
    out = capsys.readouterr().out
    assert "| Trainer.epoch | " in out and "| airbench94 | " in out


def test_layer_profile_times_a_compiled_step_whole(tmp_path):
    """layers.py with trainer.compile=true (a fresh process: inductor compiles for seconds):
    the compiled step timed after its compilation, and not split into layers."""
    config = "experiment=speedrun94 model.widths=[4,8,8] trainer.batch_size=8 trainer.compile=true"
    args = ("--repeats", "1", "--threads", "1", "--json", "layers.json")
    proc = run_script("bench/layers.py", config, *args, cwd=tmp_path)
    (profile,) = json.loads((tmp_path / "layers.json").read_text())["profiles"]
    assert profile["compiled"] and profile["layers"] == []
    assert profile["first_step_s"] > profile["step_s"] > profile["optimizer_s"] > 0
    assert sum(profile["shares"].values()) == pytest.approx(profile["step_s"])
    assert "forward + backward (compiled)" in proc.stdout and "Every layer" not in proc.stdout


def test_startup_bench_compares_two_checkouts_probe_by_probe(tmp_path):
    """startup.py, one round against HEAD's own src/ (from git archive): every probe runs in
    both, the run's reaches its first training step, and the table holds the ratios."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench" / "startup.py"), "--baseline", "HEAD"]
        + ["--rounds", "1", "--json", "startup.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "startup.json").read_text())
    probes = [row["probe"] for row in result["rows"]]
    assert probes[0] == "import torch, hydra" and probes[-1] == "debug=tiny to its first step"
    for row in result["rows"]:
        assert row["baseline_s"] > 0 and row["now_s"] > 0
        assert row["now_vs_baseline"] == pytest.approx(row["now_s"] / row["baseline_s"])
    assert "| `--help` |" in proc.stdout
