"""Helpers for the sidecar contract tests: polling with deadlines, bus-side checks, cleanup.

Everything here drives real processes (bus, sidecar, scripted handler); the
bus side is read with :class:`tests.support.rawbus.RawBus` and the admin
secret, so the project's own protocol client never vouches for itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.support import scrape
from tests.support.handlers import HandlerProcess, start_handler
from tests.support.rawbus import RawBus
from tests.support.sidecarproc import SidecarProcess, free_port, start_sidecar

__all__ = [
    "FINAL",
    "Procs",
    "bus_status",
    "log_lines",
    "metric_value",
    "settle",
    "until",
    "wait_status",
]

#: Statuses an intent does not leave on its own.
FINAL = ("fulfilled", "dead", "failed", "cancelled")


async def until(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,
    every: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s (last: {last!r})"
        await asyncio.sleep(every)


async def settle(
    probe: Callable[[], Awaitable[Any]], *, seconds: float, every: float = 0.1, what: str = ""
) -> None:
    """Assert ``probe`` stays truthy for ``seconds`` (for "nothing happens" checks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await probe()
        assert got, f"{what or 'condition'} stopped holding: {got!r}"
        await asyncio.sleep(every)


async def bus_status(raw: RawBus, intent_id: str, *, result: bool = False) -> dict[str, Any]:
    """GET /status (or /result) with the admin secret as the key; asserts 200."""
    path = f"/result/{intent_id}" if result else f"/status/{intent_id}"
    r = await raw.request("GET", path, key=raw.admin_secret)
    assert r.status == 200, r
    doc: dict[str, Any] = r.body
    return doc


async def wait_status(
    raw: RawBus,
    intent_id: str,
    statuses: tuple[str, ...] = FINAL,
    *,
    timeout: float = 15.0,
    result: bool = True,
) -> dict[str, Any]:
    """Poll until the intent reaches one of ``statuses``; returns /result (or /status)."""

    async def probe() -> dict[str, Any] | None:
        doc = await bus_status(raw, intent_id, result=result)
        return doc if doc["status"] in statuses else None

    found: dict[str, Any] = await until(
        probe, timeout=timeout, what=f"intent {intent_id} reaching {statuses}"
    )
    return found


def metric_value(sidecar: SidecarProcess, series: str) -> float:
    """One series of /metrics (``name{labels}``, labels in any order); 0 when absent."""
    _status, text = sidecar.get("/metrics")
    assert isinstance(text, str)
    return scrape.value(text, series)


def log_lines(sidecar: SidecarProcess) -> list[dict[str, Any]]:
    """The sidecar's JSON log lines (non-JSON lines are kept as {"raw": line})."""
    out: list[dict[str, Any]] = []
    for line in sidecar.logs().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            doc = {"raw": line}
        out.append(doc if isinstance(doc, dict) else {"raw": line})
    return out


class Procs:
    """Starts handlers and sidecars for one test and stops all of them afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.handlers: list[HandlerProcess] = []
        self.sidecars: list[SidecarProcess] = []

    def handler(
        self,
        port: int | None = None,
        *,
        record: Path | None = None,
        health_path: str = "",
        health_fail_file: Path | None = None,
    ) -> HandlerProcess:
        port = port or free_port()
        record = record or self.tmp / f"handler-{port}.jsonl"
        h = start_handler(port, record, health_path=health_path, health_fail_file=health_fail_file)
        self.handlers.append(h)
        return h

    def sidecar(
        self,
        *,
        bus_url: str,
        api_key: str,
        goal: str,
        app_port: int,
        extra_args: list[str] | None = None,
        wait_ready: bool = True,
    ) -> SidecarProcess:
        s = start_sidecar(
            self.tmp / "sidecar",
            bus_url=bus_url,
            api_key=api_key,
            goal=goal,
            app_port=app_port,
            extra_args=extra_args,
        )
        self.sidecars.append(s)
        if wait_ready:
            s.wait_ready()
        return s

    def close(self) -> None:
        for s in self.sidecars:
            s.kill()
        for h in self.handlers:
            h.stop()
