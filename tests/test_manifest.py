"""manifest.json: the command as it can be typed again, and the CUDA torch was built with
beside the device used."""

import json
import shlex
import sys
from pathlib import Path

import torch

import cifar_exp
from cifar_exp.manifest import typed_command
from helpers.cli import run_cli
from helpers.overrides import TINY


def test_manifest_records_the_command_as_typed_and_the_cuda_build_beside_the_device(tmp_path):
    run_dir = tmp_path / "run with spaces"
    args = [*TINY, "name=two words", f"hydra.run.dir={run_dir}"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    command = manifest["command"]
    assert command == shlex.join([sys.executable, "-m", "cifar_exp.run", *args])
    assert shlex.split(command)[1:] == ["-m", "cifar_exp.run", *args]
    assert "argv" not in manifest and "cuda" not in manifest
    assert manifest["torch_cuda_build"] == torch.version.cuda
    assert manifest["device"] == "cpu"  # debug=tiny runs on the CPU, whatever the build


def test_a_launcher_workers_command_names_the_module_not_its_file(monkeypatch):
    # A joblib worker has the sweep's sys.argv, whose argv[0] is run.py's path, and its own
    # interpreter command line.
    run_py = str(Path(cifar_exp.__file__).parent / "run.py")
    monkeypatch.setattr(sys, "argv", [run_py, "-m", "optimizer.lr=1e-3,3e-3", "name=a b"])
    expected = "python -m cifar_exp.run -m optimizer.lr=1e-3,3e-3 'name=a b'"
    assert typed_command() == expected
    monkeypatch.setattr(sys, "argv", ["my_train.py", "model=resnet"])
    assert typed_command() == "my_train.py model=resnet"
