"""Integration fixtures: a real bus process per test (or per module, where stated)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.busproc import BusProcess, start_bus
from tests.support.rawbus import RawBus

#: Starts a bus with extra CLI arguments (and optionally an existing database).
StartBus = Callable[..., BusProcess]


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusProcess]:
    """A fresh bus with its own database, stopped (by PID) after the test."""
    proc = start_bus(tmp_path / "bus")
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"bus exited with {code}:\n{proc.logs()}"


@pytest.fixture
async def raw(bus: BusProcess) -> AsyncIterator[RawBus]:
    """A raw signed client for :func:`bus`."""
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as client:
        yield client


@pytest.fixture
def start(tmp_path: Path) -> Iterator[StartBus]:
    """``start(*extra_args, db=None)``: more buses, each stopped by PID after the test.

    A bus the test SIGKILLed is expected to be dead; every other one must exit 0
    on SIGTERM.
    """
    started: list[BusProcess] = []
    counter = itertools.count()

    def _start(*extra_args: str, db: Path | None = None) -> BusProcess:
        proc = start_bus(
            tmp_path / f"bus{next(counter)}",
            db=db,
            admin_secret=started[0].admin_secret if started else None,
            extra_args=list(extra_args),
        )
        started.append(proc)
        return proc

    try:
        yield _start
    finally:
        failures = []
        for proc in started:
            if proc.proc.poll() is not None:
                continue  # stopped or killed by the test itself
            code = proc.stop()
            if code != 0:
                failures.append(f"bus exited with {code}:\n{proc.logs()}")
        assert not failures, "\n".join(failures)
