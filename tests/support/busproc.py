"""Start the real bus as a child process on 127.0.0.1 and stop it by PID.

Tests and benchmarks share this: a bus is always ``intent-fleet bus`` in a
subprocess, never an in-process fake.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.procs import Child, spawn

__all__ = ["BusProcess", "start_bus"]

_READY = re.compile(r"listening on (https?://\S+)")


@dataclass
class BusProcess(Child):
    """A running ``intent-fleet bus``; ``url`` and ``admin_secret`` are what clients need."""

    url: str = ""
    admin_secret: str = ""
    #: The SQLite file, or the postgresql:// URL of the database it shares.
    db: Path | str = Path()
    args: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def start_bus(
    tmp: Path,
    *,
    db: Path | str | None = None,
    port: int = 0,
    admin_secret: str | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 20.0,
    env: dict[str, str] | None = None,
) -> BusProcess:
    """Start a bus on 127.0.0.1 and wait for its ready line."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "bus.db"
    secret = admin_secret or "adm_" + secrets.token_hex(16)
    log_path = tmp / f"bus-{time.monotonic_ns()}.log"
    args = [
        sys.executable,
        "-m",
        "intent_fleet.cli.main",
        "bus",
        "--db",
        str(db),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(extra_args or []),
    ]
    env = {**os.environ, **(env or {}), "INTENT_BUS_ADMIN_SECRET": secret}
    proc = spawn(args, log_path, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    found: list[str] = []
    done = threading.Event()

    def read_ready() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _READY.search(line)
            if match and not found:
                found.append(match.group(1))
                done.set()
        done.set()

    threading.Thread(target=read_ready, daemon=True).start()
    if not done.wait(timeout) or not found:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"bus did not start:\n{log_path.read_text(errors='replace')}")
    return BusProcess(
        proc=proc, url=found[0], admin_secret=secret, db=db, log_path=log_path, args=args
    )
