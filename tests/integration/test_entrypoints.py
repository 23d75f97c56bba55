"""Each command as a user types it, once, in a fresh process: `python -m cifar_exp` and every
entrypoint it lists end with exit 0 on a tiny input, and a fresh interpreter importing them
loads none of the heavy libraries they use only in places (tests/ runs the rest in process)."""

import json
import subprocess
import sys

import pytest

from cifar_exp.__main__ import COMMANDS
from helpers.cli import run_cli, run_in_process
from helpers.imports import import_graph
from helpers.overrides import TINY

# Imported where they are used (a plot, a tracker, a search, a library model, an image file),
# never by importing an entrypoint: each costs a command, a sweep job and a test seconds.
HEAVY = ("torchvision", "matplotlib", "tensorboard", "optuna", "mlflow", "timm", "PIL", "wandb")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with a checkpoint, trained in this process."""
    folder = tmp_path_factory.mktemp("trained")
    assert run_in_process(*TINY, f"hydra.run.dir={folder / 'run'}", cwd=folder) == 0
    return folder / "run"


def test_the_package_lists_its_commands_and_refuses_arguments(tmp_path):
    listed = run_cli(cwd=tmp_path, module="cifar_exp")
    assert listed.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in listed.stdout
    wrong = run_cli("eval", cwd=tmp_path, module="cifar_exp")
    assert wrong.returncode == 2
    assert "takes no arguments; use python -m cifar_exp.eval" in wrong.stderr


def test_importing_the_entrypoints_loads_nothing_heavy(tmp_path):
    modules = [f"cifar_exp.{name}" for name in COMMANDS]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        f"print([h for h in {HEAVY!r} if h in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module, args, writes",
    [
        ("cifar_exp.eval", ["ckpt={run}"], "eval.json"),
        ("cifar_exp.predict", ["ckpt={run}", "images={image}"], "predictions.json"),
        ("cifar_exp.export", ["ckpt={run}"], "model.json"),
        ("cifar_exp.model_summary", ["model=resnet20", "model_summary.memory=false"], None),
        ("cifar_exp.lr_find", [*TINY, "lr_find.num_steps=5"], "lr_find.json"),
        ("cifar_exp.report", ["{run}"], None),
    ],
)
def test_each_entrypoint_runs_in_a_fresh_process(trained, tmp_path, module, args, writes):
    from PIL import Image

    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 80, 40)).save(image)
    args = [a.format(run=trained, image=image) for a in args]
    out = tmp_path / "out"
    if module != "cifar_exp.report":
        args.append(f"hydra.run.dir={out}")
    proc = run_cli(*args, cwd=tmp_path, module=module)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    if writes:
        assert json.loads((out / writes).read_text())


def test_importing_every_module_registers_nothing():
    """Only the entrypoints' setup_hydra() fills Hydra's ConfigStore and our resolvers."""
    modules = sorted(import_graph())
    code = f"""
import importlib, json
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
for name in {modules!r}:
    importlib.import_module(name)
stored = sorted(ConfigStore.instance().list(""))
resolvers = [r for r in ("launch_time", "run_name", "job_dirname") if OmegaConf.has_resolver(r)]
print(json.dumps([stored, resolvers]))
from cifar_exp.hydra_setup import setup_hydra
setup_hydra()
print(json.dumps([sorted(ConfigStore.instance().list("")), OmegaConf.has_resolver("run_name")]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = (json.loads(line) for line in proc.stdout.splitlines()[-2:])
    assert not [name for name in before[0] if name.endswith("_schema.yaml")]
    assert before[1] == []
    assert "config_schema.yaml" in after[0] and "model_resnet20_schema.yaml" in after[0]
    assert after[1] is True
