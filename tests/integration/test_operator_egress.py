"""The operator's egress guard with real sockets: a real bus on loopback, real name resolution.

Each hostile URL is one an IntentWorker's author could write as ``bus.url`` or
``backlogSource.prometheus.url``; the guarded session must refuse it before connecting, and
the sources must report that as an unavailable backlog (replicas held), not crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from intent_fleet.operator.backlog import (
    BusBacklog,
    BusStatsSource,
    MetricQuery,
    PrometheusSource,
    Scrape,
)
from intent_fleet.operator.egress import GuardedSessions, parse_allow_list
from intent_fleet.operator.errors import BacklogUnavailableError, DestinationRefusedError
from intent_fleet.protocol import BusClient, ClientSettings, RetryPolicy
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus


@pytest.fixture
async def refusing() -> AsyncIterator[GuardedSessions]:
    """The operator's default: no allow-list."""
    sessions = GuardedSessions.open(parse_allow_list([]))
    yield sessions
    await sessions.close()


async def stats(url: str, key: str, session: aiohttp.ClientSession) -> int:
    settings = ClientSettings(base_url=url, request_timeout=3, retry=RetryPolicy(attempts=1))
    async with BusClient(settings=settings, api_key=key, session=session) as client:
        bus = BusBacklog(client=client, bus_url=url)
        source = BusStatsSource(bus=bus, namespace="default", goal="g")
        return (await source.read()).backlog


#: Every spelling of "this machine" an attacker might try, with what stops it: the guard
#: ("refused"), or aiohttp and the resolver before it (a legacy numeric form is not a valid
#: URL; the .invalid name does not resolve).
LOOPBACK_SPELLINGS = {
    "127.0.0.1": "refused",
    "127.1.2.3": "refused",
    "localhost": "refused",
    "[::1]": "refused",
    "[::ffff:127.0.0.1]": "refused",
    "0.0.0.0": "refused",
    "0x7f000001": "refused",  # resolved by getaddrinfo to 127.0.0.1
    "2130706433": "invalid URL",  # 127.0.0.1 as one decimal number
    "127.0.0.1.nip.invalid": "not resolved",
}


async def test_every_spelling_of_loopback_is_refused_before_connecting(
    bus: BusProcess, refusing: GuardedSessions
) -> None:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("tenant")
    port = int(bus.url.rsplit(":", 1)[1])
    outcomes = {}
    for host in LOOPBACK_SPELLINGS:
        # Every one is an unavailable backlog (replicas held), never an answer from the bus.
        with pytest.raises(BacklogUnavailableError) as failed:
            await stats(f"http://{host}:{port}", key, refusing.spec)
        error = failed.value
        if isinstance(error, DestinationRefusedError):
            outcomes[host] = "refused"
        else:
            outcomes[host] = next(
                (why for why in ("invalid URL", "not resolved") if why in str(error)), repr(error)
            )
    assert outcomes == LOOPBACK_SPELLINGS


async def test_an_entry_as_narrow_as_the_loopback_admits_the_bus(bus: BusProcess) -> None:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("tenant")
        await raw.publish(key, {"goal": "g", "payload": {}})
    sessions = GuardedSessions.open(parse_allow_list(["127.0.0.1/32"]))
    try:
        assert await stats(bus.url, key, sessions.spec) == 1
        port = int(bus.url.rsplit(":", 1)[1])
        # Another loopback address, or the wide range, is still refused.
        with pytest.raises(DestinationRefusedError):
            await stats(f"http://127.0.0.2:{port}", key, sessions.spec)
    finally:
        await sessions.close()


async def test_the_metadata_address_is_refused_for_prometheus_too(
    refusing: GuardedSessions,
) -> None:
    scrape = Scrape(
        session=refusing.spec,
        url="http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    )
    source = PrometheusSource(scrape=scrape, backlog=MetricQuery("m", {}))
    with pytest.raises(DestinationRefusedError, match="link-local"):
        await source.read()


@pytest.fixture
async def redirector(unused_tcp_port: int) -> AsyncIterator[str]:
    """A server that answers every request with a redirect to the metadata address."""

    async def handler(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
    await site.start()
    yield f"http://127.0.0.1:{unused_tcp_port}"
    await runner.cleanup()


async def test_a_redirect_to_metadata_is_refused_at_the_hop(redirector: str) -> None:
    sessions = GuardedSessions.open(parse_allow_list(["127.0.0.1/32"]))
    try:
        # The sources never follow redirects; a session that did would still be guarded.
        with pytest.raises(DestinationRefusedError, match="link-local"):
            async with sessions.spec.get(redirector + "/metrics", allow_redirects=True):
                pass
    finally:
        await sessions.close()


async def test_an_allow_list_keeps_backlog_reads_to_the_named_places(
    bus: BusProcess, tmp_path: Path
) -> None:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("tenant")
    # Named, but only as a host name: the address 127.0.0.1 stays refused (not narrow).
    sessions = GuardedSessions.open(parse_allow_list(["localhost", "10.96.0.0/12"]))
    try:
        port = int(bus.url.rsplit(":", 1)[1])
        with pytest.raises(DestinationRefusedError, match="loopback"):
            await stats(f"http://localhost:{port}", key, sessions.spec)
        # Pod addresses are not held to the allow-list, only to the refusals.
        with pytest.raises(DestinationRefusedError, match="loopback"):
            async with sessions.pods.get(bus.url + "/health"):
                pass
    finally:
        await sessions.close()
    await asyncio.sleep(0)
