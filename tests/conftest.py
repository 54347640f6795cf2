"""Rules every test keeps, whatever its kind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.postgres import NewDatabase, PostgresServer, postgres_bin


@pytest.fixture(autouse=True)
async def _no_task_left_behind() -> AsyncIterator[None]:
    """Every task a test starts is awaited, or cancelled and awaited, by the test itself.

    Autouse, so it is set up first and torn down last: the test's own fixtures have closed
    their clients and servers by the time it looks.
    """
    yield
    current = asyncio.current_task()
    stray = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not stray, f"the test left tasks running: {stray}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use; each test that needs a
    database asks it for a fresh one (:meth:`PostgresServer.new_database`)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: `make db-deps` (as root) installs it")
    server = PostgresServer.create(bindir)
    try:
        yield server
    finally:
        server.close()


#: The storage backends every bus test runs against: the embedded SQLite file, and a
#: PostgreSQL database (what bus replicas share).
BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend of this module's buses: each module runs once per backend. A test about
    one backend only pins it: ``@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)``."""
    return str(request.param)


@pytest.fixture(scope="module")
def new_database(backend: str, request: pytest.FixtureRequest) -> NewDatabase:
    if backend == "sqlite":
        return lambda: None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database
