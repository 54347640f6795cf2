"""`intent-fleet operator` as a real process against a real API server."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import Child, free_port, spawn


@dataclass
class OperatorProcess(Child):
    listen: str = ""

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.listen}/readyz", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


#: The tests' buses listen on this host's loopback, which the operator refuses unless an entry
#: as narrow as /32 admits it; 0.0.0.0/0 keeps every other address (but metadata) reachable.
LOOPBACK_BUS = ("--backlog-allow", "127.0.0.1/32,0.0.0.0/0")


def start_operator(
    kubeconfig: Path,
    log_path: Path,
    *args: str,
    timeout: float = 60.0,
    egress: tuple[str, ...] = LOOPBACK_BUS,
) -> OperatorProcess:
    """Start the operator and wait for its /readyz (it leads and its watches are up).

    ``egress`` are its allow-list flags: by default the loopback bus of the tests is allowed.
    """
    listen = f"127.0.0.1:{free_port()}"
    args = (*egress, *args)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    proc = spawn(
        [sys.executable, "-m", "intent_fleet.cli.main", "operator", "--listen", listen, *args],
        log_path,
        env=env,
    )
    started = OperatorProcess(proc, log_path, listen=listen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"operator exited with {proc.returncode}:\n{started.logs()}")
        if started.ready():
            return started
        time.sleep(0.2)
    started.kill()
    raise AssertionError(f"operator not ready after {timeout:.0f} s:\n{started.logs()}")
