"""Running an entrypoint as a user does: in a fresh process, or inside the test's process."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest


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


def start_run(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m cifar_exp.run *args` in the background, its output (both streams) in a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def torchrun(*overrides: str, cwd, nproc: int = 2) -> subprocess.CompletedProcess:
    """A real `torchrun --standalone` launch (a free port, so parallel runs never collide)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "cifar_exp.run",
            *overrides,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
