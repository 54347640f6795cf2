"""Helpers for the sidecar life-cycle tests: a stack of real processes stopped by PID,
a small synchronous bus client, and bounded polling.

    with LifecycleStack(tmp_path) as stack:
        bus = stack.bus("--claim-timeout", "3")
        handler = stack.handler()
        sidecar = stack.sidecar(bus, goal="g", app_port=handler.port)

Everything a stack started is stopped when it closes: sidecars first (SIGTERM,
then SIGKILL), then handlers, then buses. A process the test already killed
is left alone.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from tests.support.busproc import BusProcess, start_bus
from tests.support.handlers import CountingHandler, start_counting_handler
from tests.support.postgres import NewDatabase
from tests.support.sidecarproc import SidecarProcess, free_port, start_sidecar

__all__ = ["BusHttp", "LifecycleStack", "holds_for", "in_flight", "wait_until"]

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def holds_for(
    probe: Callable[[], object], *, seconds: float, what: str, interval: float = 0.1
) -> None:
    """Assert ``probe`` stays truthy for ``seconds``: the bounded form of "nothing happens"."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        assert got, f"{what} stopped holding: {got!r}"
        time.sleep(interval)


def in_flight(sidecar: SidecarProcess) -> int:
    """The sidecar's in-flight count from GET /v1/state."""
    status, state = sidecar.get("/v1/state")
    assert status == 200 and isinstance(state, dict), (status, state)
    count = state["in_flight"]
    assert isinstance(count, int)
    return count


class BusHttp:
    """Blocking calls on a bus: publish and stats with a key, intents via the admin route."""

    def __init__(self, url: str, *, admin_secret: str, key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.admin_secret = admin_secret
        self.key = key or admin_secret

    def call(
        self,
        method: str,
        path: str,
        doc: object | None = None,
        *,
        admin: bool = False,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        headers["X-Admin-Token" if admin else "X-API-KEY"] = (
            self.admin_secret if admin else self.key
        )
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        return status, json.loads(body) if body.strip() else None

    def publish(self, goal: str, payload: object) -> str:
        status, body = self.call("POST", "/intent", {"goal": goal, "payload": payload})
        assert status == 201, (status, body)
        return str(body["id"])

    def intent(self, intent_id: str) -> dict[str, Any]:
        """The full intent (admin route): status, claim_attempts, claim_expires_at, ..."""
        status, body = self.call("GET", f"/admin/intents/{intent_id}", admin=True)
        assert status == 200, (status, body)
        doc: dict[str, Any] = body
        return doc

    def intents(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {i: self.intent(i) for i in ids}

    def stats(self, goal: str) -> dict[str, Any]:
        """The /stats row of one goal (zeros when the bus has none)."""
        status, body = self.call("GET", f"/stats?goal={goal}")
        assert status == 200, (status, body)
        for row in body["goals"]:
            if row["goal"] == goal:
                got: dict[str, Any] = row
                return got
        return {"goal": goal, "ready": 0, "delayed": 0, "claimed": 0, "dead": 0}

    def claim(self, goal: str) -> dict[str, Any] | None:
        """One plain claim (no long-poll); None when nothing is ready."""
        status, body = self.call("POST", f"/claim?goal={goal}")
        if status == 204:
            return None
        assert status == 200, (status, body)
        doc: dict[str, Any] = body
        return doc


class LifecycleStack:
    """Real bus, handler and sidecar processes, each stopped by PID on close."""

    def __init__(self, tmp: Path, new_database: NewDatabase = lambda: None) -> None:
        self.tmp = tmp
        self._new_database = new_database
        self.buses: list[BusProcess] = []
        self.handlers: list[CountingHandler] = []
        self.sidecars: list[SidecarProcess] = []
        self._n = 0

    def _dir(self, kind: str) -> Path:
        self._n += 1
        return self.tmp / f"{kind}{self._n}"

    def bus(
        self,
        *extra_args: str,
        db: Path | str | None = None,
        port: int = 0,
        admin_secret: str | None = None,
    ) -> BusProcess:
        """A bus on ``db``, else on a fresh database of the stack's backend."""
        proc = start_bus(
            self._dir("bus"),
            db=db if db is not None else self._new_database(),
            port=port,
            admin_secret=admin_secret,
            extra_args=list(extra_args),
        )
        self.buses.append(proc)
        return proc

    def handler(self, name: str = "record") -> CountingHandler:
        proc = start_counting_handler(free_port(), self.tmp / f"{name}-{self._n}.jsonl")
        self._n += 1
        self.handlers.append(proc)
        return proc

    def sidecar(
        self, bus: BusProcess, *, goal: str, app_port: int, extra_args: list[str] | None = None
    ) -> SidecarProcess:
        proc = start_sidecar(
            self._dir("sidecar"),
            bus_url=bus.url,
            api_key=bus.admin_secret,
            goal=goal,
            app_port=app_port,
            extra_args=extra_args,
        )
        self.sidecars.append(proc)
        return proc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for sidecar in self.sidecars:
            with contextlib.suppress(Exception):
                sidecar.stop(timeout=10)
        for handler in self.handlers:
            with contextlib.suppress(Exception):
                handler.stop(timeout=5)
        for bus in self.buses:
            with contextlib.suppress(Exception):
                bus.stop(timeout=10)
