"""Start, probe and stop the cluster's daemons, tracked only by the PIDs this harness recorded.

Each daemon runs in its own session (so it outlives `cluster.py up`), logs to logs/<name>.log,
and is remembered in run/<name>.pid together with its executable, so a recycled PID that now
belongs to some other program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleetcluster.errors import ComponentFailedError, MissingBinaryError

Probe = Callable[[], bool]


@dataclass(frozen=True)
class Component:
    """One daemon: its name, command line and the probe that says it is ready."""

    name: str
    argv: list[str]
    ready: Probe
    env: dict[str, str] = field(default_factory=dict)


def _answers_ok(url: str, context: ssl.SSLContext | None) -> Probe:
    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    return probe


def https_probe(url: str, ca: Path, cert: Path | None = None, key: Path | None = None) -> Probe:
    """Ready when ``url`` answers 200 over TLS verified against ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return _answers_ok(url, context)


def tcp_probe(host: str, port: int) -> Probe:
    """Ready when something accepts a TCP connection there."""

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            return False

    return probe


def http_probe(url: str) -> Probe:
    """Ready when a plain-HTTP ``url`` on loopback answers 200."""
    return _answers_ok(url, None)


def insecure_probe(url: str) -> Probe:
    """For components whose serving cert is self-signed at start (scheduler, controller-manager)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return _answers_ok(url, context)


class Supervisor:
    """Owns the pid files in ``run_dir`` and the logs in ``log_dir``."""

    def __init__(self, run_dir: Path, log_dir: Path, ready_timeout: float) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.ready_timeout = ready_timeout

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid_of(self, name: str) -> int | None:
        """The recorded PID if that process is still the executable we started."""
        path = self._pid_path(name)
        try:
            pid_text, exe = path.read_text().split("\n", 1)
            pid = int(pid_text)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if cmdline.split(b"\0", 1)[0].decode(errors="replace") != exe.strip():
            return None
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        return None if state == "Z" else pid

    def names(self) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))

    def start(self, component: Component) -> str:
        """Start ``component`` unless it already runs; wait until ready. Returns what happened."""
        binary = component.argv[0]
        if not os.access(binary, os.X_OK):
            raise MissingBinaryError(
                f"{component.name}: {binary} is missing; run hack/cluster/build.sh"
            )
        pid = self.pid_of(component.name)
        if pid is not None:
            self._wait_ready(component, None)
            return "running"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(component.name).open("ab")
        try:
            child = subprocess.Popen(
                component.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **component.env},
            )
        finally:
            log.close()
        self._pid_path(component.name).write_text(f"{child.pid}\n{binary}\n")
        self._wait_ready(component, child)
        return "started"

    def _wait_ready(self, component: Component, child: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if component.ready():
                return
            if child is not None and child.poll() is not None:
                raise ComponentFailedError(
                    f"{component.name} exited with {child.returncode} before it was ready; "
                    f"its log: {self.log_path(component.name)}\n{self.tail(component.name)}"
                )
            time.sleep(0.2)
        raise ComponentFailedError(
            f"{component.name} not ready after {self.ready_timeout:.0f} s; "
            f"its log: {self.log_path(component.name)}\n{self.tail(component.name)}"
        )

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self, name: str, grace: float = 15.0) -> bool:
        """SIGTERM the recorded process, SIGKILL it after ``grace``; True if one was running."""
        pid = self.pid_of(name)
        self._pid_path(name).unlink(missing_ok=True)
        if pid is None:
            return False
        _signal(pid, signal.SIGTERM)
        if not wait_gone(pid, grace):
            _signal(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
        return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def wait_gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (or is a zombie waiting for its reaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return True
        time.sleep(0.1)
    return False
