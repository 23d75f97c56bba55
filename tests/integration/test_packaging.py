"""A regular (non-editable) install must carry the configs and find them from any folder."""

import os
import subprocess
import sys
import zipfile

from helpers.paths import REPO, group_options


def test_wheel_ships_configs_and_runs_from_elsewhere(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("cifar_exp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cifar_exp/conf/config.yaml" in names
    assert "cifar_exp/conf/hydra/sweeper/cifar_exp_optuna.yaml" in names
    assert "hydra_plugins/cifar_exp_optuna/optuna_sweeper.py" in names  # found by Hydra there
    groups = [
        "model",
        "optimizer",
        "scheduler",
        "dataset",
        "augment",
        "device",
        "trainer",
        "tracker",
    ]
    for group in [*groups, "experiment", "hparams_search"]:
        for option in group_options(group):
            assert f"cifar_exp/conf/{group}/{option}.yaml" in names

    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-m", "cifar_exp.run", "--info", "searchpath", "model=resnet20"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"file://{site}/cifar_exp/conf" in proc.stdout
    # The console script is the same entrypoint.
    script = subprocess.run(
        [str(site / "bin" / "cifar-exp"), "--info", "searchpath", "model=resnet20"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0, script.stderr[-2000:]
    assert f"file://{site}/cifar_exp/conf" in script.stdout
