"""A real PostgreSQL server for a test: `initdb` into a temporary folder, the server started
on a free port of 127.0.0.1, stopped by its own pid. Tests skip, saying why, without the
server's binaries (Debian's `postgresql` package; .ci/run installs it) or the driver.

initdb refuses to run as root: as root, the server runs as the `postgres` user the package
creates (runuser), in a folder that user owns."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "cifar"
PASSWORD = "secret"
SERVER_USER = "postgres"  # whom the server runs as when the tests run as root


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def why_not() -> str | None:
    """Why no server can start here, or None."""
    if server_binaries() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "no psycopg (the driver SQLAlchemy uses for postgresql://): pip install -e '.[dev]'"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and no {SERVER_USER} user to run the server as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    pid: int
    data: Path

    def url(self, password: str = PASSWORD, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"


def as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def start_server(folder: Path) -> Server:
    bin_dir = server_binaries()
    assert bin_dir is not None
    folder.mkdir(parents=True, exist_ok=True)
    data, password_file = folder / "data", folder / "password"
    password_file.write_text(PASSWORD)
    if os.geteuid() == 0:  # the server's user must own its folder and read the password
        entry = pwd.getpwnam(SERVER_USER)
        for path in (folder, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    subprocess.run(
        as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
    subprocess.run(
        as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log")]
            + ["-w", "start"]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    # postmaster.pid's first line: the server's own process, which the teardown stops.
    pid = int((data / "postmaster.pid").read_text().split()[0])
    return Server(port, pid, data)


def stop_server(server: Server) -> None:
    """A fast shutdown (SIGINT) of the server's own process, then wait until it is gone."""
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(server.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(server.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    """A PostgreSQL server for the module's tests; skips, saying why, when none can start."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # Not under pytest's tmp folder, which only its owner may enter (not the server's user).
    folder = Path(tempfile.mkdtemp(prefix="cifar-exp-postgres-"))
    try:
        server = start_server(folder)
        try:
            yield server
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
