"""A real PostgreSQL server for the tests: Debian's `postgresql` package, a throwaway cluster
on a free loopback port, started and stopped by the test session.

PostgreSQL refuses to run as root (as these tests run in CI), so when root the cluster's
folder belongs to the `postgres` user the package creates and its commands run as that
user (runuser). pytest-postgresql's process fixture runs pg_ctl as the current user,
which is why this small helper does it instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "gateway"  # the database's superuser (trust authentication, loopback only)
DATABASE = "ledger"


def postgres_bin() -> Path | None:
    """The folder of pg_ctl and initdb: PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def require_postgres() -> Path:
    """pg_ctl's folder; skip with the reason where PostgreSQL is missing, fail under CI."""
    found = postgres_bin()
    if found is None:
        reason = "PostgreSQL not installed (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must install it (see .ci/run)")
        pytest.skip(reason)
    return found


def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped and removed after (a fixture's body)."""
    server = PostgresServer(require_postgres())
    try:
        server.start()
        yield server
    finally:
        server.close()


class PostgresServer:
    """One cluster in a temporary folder: `start()`, `stop()` (and start again: the data stays),
    `close()` stops it and removes the folder. `url` is for the gateway's ledger."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        self.running = False
        self.databases = 0

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=self.root)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        self.running = True
        if not (self.root / "created").exists():
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)
            (self.root / "created").touch()

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when a database server goes down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def new_database(self) -> str:
        """The URL of a new, empty database on this server (one per test)."""
        self.databases += 1
        name = f"test_{self.databases}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
