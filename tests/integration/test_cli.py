"""The entrypoint as users run it: real Hydra, real TensorBoard files; a real process where
exit messages matter, in-process (the same entrypoint) where a run is only looked at."""

import re

from helpers.cli import run_cli
from helpers.overrides import TINY
from helpers.paths import CONF_DIR, group_options


def test_default_output_dirs_are_per_run_and_relative_to_launch_folder(tmp_path):
    # Two runs started together from the same folder never share a directory.
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "cifar_exp.run", *TINY, "trainer.epochs=0"]
    procs = [
        subprocess.Popen(cmd + extra, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for extra in ([], ["name=baseline"])
    ]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    runs = sorted(p.parent.name for p in tmp_path.glob("outputs/*/*/metrics.json"))
    assert len(runs) == 2
    # <time>_<name>_<pid>; by default the name is the overrides typed, without the plumbing.
    shown = [o for o in TINY if not o.startswith(("device", "trainer.num_threads", "trainer.log"))]
    typed = "+".join(o.replace("=", "-") for o in shown)
    named = {re.fullmatch(r"\d\d-\d\d-\d\d_(.+)_\d+", run)[1] for run in runs}
    assert named == {f"{typed}+trainer.epochs-0", "baseline"}


def test_help_opens_with_the_tools_header_lists_every_group_and_cfg_shows_the_config(tmp_path):
    help_text = run_cli("--help", cwd=tmp_path).stdout
    assert help_text.startswith("cifar-exp: train, compare and sweep CNNs on CIFAR-10")
    assert "powered by Hydra" not in help_text
    header = help_text[: help_text.index("== Configuration groups ==")]
    assert "python -m cifar_exp.run hparams_search=optuna" in header
    assert "tensorboard --logdir outputs" in header and "Outputs: " in header
    # conf/hydra/ holds options of Hydra's own groups (our sweeper), listed by --hydra-help.
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    assert len(groups) >= 9
    for group in groups:
        assert f"{group}: {', '.join(group_options(group))}\n" in help_text
    assert (
        "model: airbench, densenet_bc, lenet5, mobilenetv2, preact_resnet18, resnet," in help_text
    )
    assert "Models at their defaults (parameters, FLOPs per 32x32 image" in help_text
    assert "\n  wrn  " in help_text  # its line in that list
    assert "schema" not in help_text
    job = run_cli("--cfg", "job", "model=resnet20", "optimizer=sgd", cwd=tmp_path).stdout
    assert "name: resnet20" in job and "momentum: 0.9" in job
