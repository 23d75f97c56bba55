"""manifest.json: the command as it can be typed again, and the CUDA torch was built with
beside the device used."""

import sys
from pathlib import Path

import cifar_exp
from cifar_exp.records.manifest import typed_command


def test_a_launcher_workers_command_names_the_module_not_its_file(monkeypatch):
    # A joblib worker has the sweep's sys.argv, whose argv[0] is run.py's path, and its own
    # interpreter command line.
    run_py = str(Path(cifar_exp.__file__).parent / "run.py")
    monkeypatch.setattr(sys, "argv", [run_py, "-m", "optimizer.lr=1e-3,3e-3", "name=a b"])
    expected = "python -m cifar_exp.run -m optimizer.lr=1e-3,3e-3 'name=a b'"
    assert typed_command() == expected
    monkeypatch.setattr(sys, "argv", ["my_train.py", "model=resnet"])
    assert typed_command() == "my_train.py model=resnet"
