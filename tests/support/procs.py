"""Child processes of the tests and benchmarks: one way to start, watch and stop them.

Every real process the suite runs (a bus, a sidecar, the operator, a handler) is a
:class:`Child`: started with its output in a log file, waited for until it listens, stopped
by PID (SIGTERM, then SIGKILL after a deadline), its log at hand for failure messages.
Handlers record what they receive as JSON lines; :func:`read_record` is the one reader.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["Child", "free_port", "read_record", "spawn"]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` with stderr (and stdout, unless given) appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdout=log if stdout is None else stdout,
            stderr=log,
            text=text,
            bufsize=1 if text else -1,
        )


@dataclass
class Child:
    """A running child process the test started; only the test ends it, by its PID."""

    proc: subprocess.Popen[Any]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, *, timeout: float = 15.0, sig: signal.Signals = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM; SIGINT for Ctrl-C) and wait; SIGKILL if it is still there after
        ``timeout``. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def kill(self) -> int:
        """SIGKILL (the crash a durability test needs) and reap. The exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return int(self.proc.returncode)

    def wait_listening(self, port: int, *, timeout: float = 10.0, what: str = "process") -> None:
        """Until 127.0.0.1:``port`` accepts connections; killed, with its log, if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"{what} did not listen on {port} within {timeout} s:\n{self.logs()}")


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a handler's record file (a line being written is
    skipped, so a reader never races the writer)."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines
