"""Integration fixtures: a real bus process per test (or per module, where stated)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.busproc import BusProcess, start_bus
from tests.support.postgres import NewDatabase
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


@pytest.fixture
def bus(
    backend: str, new_database: NewDatabase, _spare_buses: _SparePool, tmp_path: Path
) -> Iterator[BusProcess]:
    """A fresh bus with its own database (of each backend), stopped (by PID) after the test."""
    if backend == "sqlite":
        proc = _spare_buses.take()
    else:
        proc = start_bus(tmp_path / "bus", db=new_database())
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
def start(tmp_path: Path, new_database: NewDatabase) -> Iterator[StartBus]:
    """``start(*extra_args, db=None, env=None)``: more buses, each stopped by PID after the test.

    Without ``db``, each starts on a fresh database of the module's backend; ``db=bus.db``
    starts another bus on an earlier one's database (a restart, or a second replica).

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
            db=db if db is not None else new_database(),
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
