"""manifest.json: the command as it can be typed again, and the CUDA torch was built with
beside the device used."""

import json
import shlex
import sys

import torch

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
