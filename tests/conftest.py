from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "src" / "cifar_exp" / "conf"
CIFAR10_JPEG = Path(
    os.environ.get("CIFAR10_JPEG", REPO.parent / "shared" / "datasets" / "cifar10-jpeg")
)

# A run small enough for a test (conf/debug/tiny.yaml): synthetic data, a few batches.
TINY = ["debug=tiny"]
# The same trainer settings, for a test on another data set.
TINY_TRAINER = [
    "device=cpu",
    "trainer.epochs=1",
    "trainer.batch_size=32",
    "trainer.log_every_n_steps=2",
    "trainer.num_threads=1",
]


def run_cli(
    *overrides: str,
    cwd: Path,
    module: str = "cifar_exp.run",
    env: dict | None = None,
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    """Run an entrypoint the way a user does, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def printed_command(output: str, label: str) -> str:
    """The command a run printed after `label` (e.g. "Continue with: "), as printed."""
    (line,) = [line for line in output.splitlines() if label in line][-1:]
    return line.split(label, 1)[1].strip()


def run_printed(
    command: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run a printed command through the shell, as a user pastes it; `python` is this
    interpreter."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": path, **(env or {})},
    )


def run_in_process(*overrides: str, cwd: Path) -> int:
    """Run `python -m cifar_exp.run *overrides` from `cwd` inside this process: the same
    entrypoint, Hydra's composition, run folder, .hydra/ and run.log included, without a new
    interpreter's seconds of imports. Returns the exit code; any other error propagates with
    its traceback. Signals, messages on a terminal, torchrun and launchers need run_cli."""
    from hydra.core.global_hydra import GlobalHydra

    from cifar_exp.run import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [sys.argv[0], *overrides])
        patch.chdir(cwd)
        # Hydra would turn an unexpected error into "exit 1"; a test wants its traceback.
        patch.setenv("HYDRA_FULL_ERROR", "1")
        GlobalHydra.instance().clear()
        try:
            main()
        except SystemExit as stop:
            return stop.code or 0
        finally:
            GlobalHydra.instance().clear()
            # Hydra configured logging for the run (its run.log among the handlers): undo it.
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
    return 0


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.fixture
def compose():
    """Compose the real config with Hydra's compose API: compose(overrides) -> DictConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from cifar_exp.rundir import setup_hydra

    setup_hydra()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda overrides=(): hydra_compose("config", overrides=list(overrides))


def needs_plugin(module: str):
    """Skip unless the Hydra plugin `module` (e.g. hydra_plugins.hydra_joblib_launcher) is
    installed; without any plugin even the hydra_plugins namespace is missing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return pytest.mark.skipif(
        not found, reason=f"{module} is not installed; install it with: pip install -e '.[sweeps]'"
    )
