"""A real PostgreSQL server for tests: Debian's package, its own data directory, loopback.

The server runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses to
run as root), listens on 127.0.0.1 on a free port, and keeps its socket in its own data
directory. Each test gets a fresh database of its own; :meth:`PostgresServer.stop` and
:meth:`start` let fault tests take the server away and bring it back on the same port.
Nothing outside the data directory is touched, and only the server started here is stopped
(``pg_ctl`` finds it by the PID file in that directory).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import free_port

__all__ = ["NewDatabase", "PostgresServer", "postgres_bin"]

#: A fresh database for one bus: a postgresql:// URL, or None for a SQLite file of its own.
NewDatabase = Callable[[], "str | None"]

#: The database user the bus connects as (trust authentication, loopback only).
USER = "bus"


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


@dataclass
class PostgresServer:
    """One throwaway PostgreSQL server."""

    bindir: Path
    root: Path
    port: int = field(default_factory=free_port)
    #: Addresses to listen on: loopback, and for a cluster's pods the node's own address.
    listen: tuple[str, ...] = ("127.0.0.1",)
    #: The password of the bus user, which clients from beyond loopback must give.
    password: str = ""
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            self._as_owner(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    @classmethod
    def create(
        cls, bindir: Path, *, listen: tuple[str, ...] = ("127.0.0.1",), password: str = ""
    ) -> PostgresServer:
        """A new server: loopback trusted; other ``listen`` addresses need ``password``."""
        # Its own directory outside pytest's (root-only) temp tree, so postgres can enter it.
        root = Path(tempfile.mkdtemp(prefix="intent-fleet-pg-"))
        server = cls(bindir=bindir, root=root, listen=listen, password=password)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        server._run(
            str(bindir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", USER,
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        if password:
            with (server.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all bus 0.0.0.0/0 scram-sha-256\n")
        server.start()
        if password:
            server.psql(f"ALTER ROLE {USER} PASSWORD '{password}'")
        return server

    def start(self) -> None:
        options = (
            f"-c listen_addresses={','.join(self.listen)} -p {self.port}"
            f" -c unix_socket_directories={self.data}"
            " -c max_connections=400 -c fsync=on -c log_min_messages=warning"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.data / "server.log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` (the tests' own text, never input) over loopback; what it printed."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
                "-d", database, "-q", "-t", "-A", "-c", sql,
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
