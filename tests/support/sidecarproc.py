"""Start a real ``intent-fleet sidecar`` process and stop it by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import Child, free_port, spawn

__all__ = ["SidecarProcess", "free_port", "start_sidecar"]


@dataclass
class SidecarProcess(Child):
    api_url: str = ""

    def get(self, path: str, *, timeout: float = 5.0) -> tuple[int, dict[str, object] | str]:
        """GET on the local API; JSON answers are decoded."""
        try:
            with urllib.request.urlopen(self.api_url + path, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()

    def post(
        self, path: str, doc: object | None = None, *, timeout: float = 70.0
    ) -> tuple[int, object]:
        data = json.dumps(doc).encode() if doc is not None else b""
        req = urllib.request.Request(
            self.api_url + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def metric(self, name: str) -> float:
        """Sum of every series of one metric on /metrics."""
        _status, text = self.get("/metrics")
        assert isinstance(text, str)
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head = line.split(" ", 1)[0]
                if head == name or head.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                status, _ = self.get("/readyz", timeout=1)
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sidecar not ready after {timeout} s:\n{self.logs()}")


def start_sidecar(
    tmp: Path,
    *,
    bus_url: str,
    api_key: str,
    goal: str,
    app_port: int,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> SidecarProcess:
    """Start a sidecar (key from INTENT_API_KEY) and wait until its local API answers."""
    tmp.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    log_path = tmp / f"sidecar-{api_port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    full_env.update({"INTENT_API_KEY": api_key, **(env or {})})
    args = [
        sys.executable,
        "-m",
        "intent_fleet.cli",
        "sidecar",
        "--goal",
        goal,
        "--bus-url",
        bus_url,
        "--app-port",
        str(app_port),
        "--api-port",
        str(api_port),
        "--log-level",
        "debug",
        *(extra_args or []),
    ]
    proc = spawn(args, log_path, env=full_env, stdout=subprocess.DEVNULL)
    sidecar = SidecarProcess(proc, log_path, api_url=f"http://127.0.0.1:{api_port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidecar exited with {proc.returncode}:\n{sidecar.logs()}")
        try:
            sidecar.get("/healthz", timeout=1)
            return sidecar
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    sidecar.kill()
    raise RuntimeError(f"sidecar API did not come up:\n{sidecar.logs()}")
