"""Integration fixtures: a real bus process per test (or per module, where stated)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.busproc import BusProcess, start_bus
from tests.support.postgres import PostgresServer
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs

#: Starts a bus with extra CLI arguments (and optionally an existing database).
StartBus = Callable[..., BusProcess]


class _SparePool:
    """Keeps one fresh bus starting in the background while a test runs.

    Starting a bus costs about 0.4 s (mostly imports); the ``bus`` fixture takes
    the spare and at once begins the next, so most tests never wait for it.
    Each bus still has its own directory and database and serves one test.
    """

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spare-bus")
        self._spare: Future[BusProcess] | None = None

    def _start(self) -> Future[BusProcess]:
        return self._executor.submit(start_bus, self._factory.mktemp("bus"))

    def take(self) -> BusProcess:
        current = self._spare or self._start()
        self._spare = self._start()
        return current.result()

    def close(self) -> None:
        if self._spare is not None:
            with contextlib.suppress(Exception):
                self._spare.result().stop()
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def _spare_buses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_SparePool]:
    pool = _SparePool(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


#: The storage backends every bus test runs against: the embedded SQLite file, and a
#: PostgreSQL database (the shared backend of bus replicas).
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bus(
    backend: str, _spare_buses: _SparePool, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[BusProcess]:
    """A fresh bus with its own database (of each backend), stopped (by PID) after the test."""
    if backend == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        proc = start_bus(tmp_path / "pgbus", db=server.new_database())
    else:
        proc = _spare_buses.take()
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
    """``start(*extra_args, db=None, env=None)``: more buses, each stopped by PID after the test.

    A bus the test SIGKILLed is expected to be dead; every other one must exit 0
    on SIGTERM.
    """
    started: list[BusProcess] = []
    counter = itertools.count()

    def _start(
        *extra_args: str, db: Path | str | None = None, env: dict[str, str] | None = None
    ) -> BusProcess:
        proc = start_bus(
            tmp_path / f"bus{next(counter)}",
            db=db,
            admin_secret=started[0].admin_secret if started else None,
            extra_args=list(extra_args),
            env=env,
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


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Scripted handlers and sidecars for one test, all stopped by PID after it."""
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()
