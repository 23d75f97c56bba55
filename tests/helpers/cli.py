"""Running an entrypoint as a user does: in a fresh process, or inside the test's process."""

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


class FreshProcesses:
    """Whether the running test may start a fresh process (conftest.py sets it per test:
    only the tests under tests/integration/ may)."""

    allowed = True  # outside pytest (a helper used from a script): no restriction

    def check(self) -> None:
        if not self.allowed:
            raise RuntimeError(
                "this test starts a fresh process: move it to tests/integration/ (run by "
                "`pytest -m integration`), or run the entrypoint in process (run_in_process)"
            )


FRESH_PROCESSES = FreshProcesses()


def run_cli(
    *overrides: str,
    cwd: Path,
    module: str = "cifar_exp.run",
    env: dict | None = None,
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    """Run an entrypoint the way a user does, in a fresh process."""
    FRESH_PROCESSES.check()
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_in_process(
    *overrides: str, cwd: Path, module: str = "cifar_exp.run", full_error: bool = True
) -> int:
    """Run `python -m <module> *overrides` from `cwd` inside this process: the same
    entrypoint, Hydra's composition, run folder, .hydra/ and run.log included, without a new
    interpreter's seconds of imports. Returns the exit code. `full_error`: any other error
    propagates with its traceback (else Hydra reports it, as for a user). Signals, torchrun and
    launchers in other processes need run_cli."""
    from hydra.core.global_hydra import GlobalHydra

    from cifar_exp.hydra_setup import setup_hydra

    entrypoint = importlib.import_module(module)
    # A test's own Hydra context (the `compose` fixture) is put back afterwards.
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [sys.argv[0], *overrides])
        patch.chdir(cwd)
        # Hydra would turn an unexpected error into "exit 1"; a test wants its traceback.
        if full_error:
            patch.setenv("HYDRA_FULL_ERROR", "1")
        else:
            patch.delenv("HYDRA_FULL_ERROR", raising=False)
        GlobalHydra.instance().clear()
        try:
            if module == "cifar_exp.report":  # argparse, not Hydra
                return entrypoint.main(list(overrides))
            if module != "cifar_exp.run":  # its own main() takes this step; theirs, __main__
                setup_hydra(list(overrides))
            entrypoint.main()
        except SystemExit as stop:
            return stop.code or 0
        finally:
            GlobalHydra.instance().clear()
            if outer is not None:
                GlobalHydra.instance().initialize(outer)
            # Hydra configured logging for the run (its run.log among the handlers): undo it.
            for handler in root.handlers:
                if handler not in handlers:
                    handler.close()
            root.handlers[:] = handlers
            root.setLevel(level)
    return 0


def run_cli_in_process(
    *overrides: str, cwd: Path, module: str = "cifar_exp.run"
) -> subprocess.CompletedProcess:
    """What run_cli returns (exit code, stdout, stderr), from the entrypoint run in this
    process: Hydra's own error lines instead of tracebacks, the log lines on stdout and
    Hydra's errors on stderr, as in a real process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_in_process(*overrides, cwd=cwd, module=module, full_error=False)
    return subprocess.CompletedProcess([module, *overrides], code, out.getvalue(), err.getvalue())


def output_in_process(*overrides: str, cwd: Path, module: str = "cifar_exp.run") -> tuple[int, str]:
    """run_cli_in_process's exit code and everything it printed (both streams)."""
    proc = run_cli_in_process(*overrides, cwd=cwd, module=module)
    return proc.returncode, proc.stdout + proc.stderr


def printed_command(output: str, label: str) -> str:
    """The command a run printed after `label` (e.g. "Continue with: "), as printed."""
    (line,) = [line for line in output.splitlines() if label in line][-1:]
    return line.split(label, 1)[1].strip()


def run_printed(
    command: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run a printed command through the shell, as a user pastes it; `python` is this
    interpreter."""
    FRESH_PROCESSES.check()
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
    FRESH_PROCESSES.check()
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_exp.run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def torchrun(*overrides: str, cwd, nproc: int = 2) -> subprocess.CompletedProcess:
    """A real `torchrun --standalone` launch (a free port, so parallel runs never collide)."""
    FRESH_PROCESSES.check()
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


def output(proc: subprocess.CompletedProcess) -> str:
    """Everything a process printed, both streams."""
    return proc.stdout + proc.stderr


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until `condition()` holds; fails if `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def error_lines(capfd) -> list[str]:
    """What a run in this process printed beyond its INFO lines (a refusal before Hydra's job
    logging starts is printed as a [HYDRA] line); no traceback."""
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return [line for line in (out + err).splitlines() if line and "][INFO]" not in line]
