"""Backlog sources against real processes: the bus (``/stats``, ``/metrics``), real sidecars,
dead ports, and small local servers that answer what a broken endpoint would.

The bus is driven with :class:`RawBus` (not the project's client) so the source under
test is the only project code reading the backlog.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from intent_fleet.operator.backlog import (
    BacklogReading,
    BacklogSource,
    BusBacklog,
    BusStatsSource,
    FanOutSettings,
    MetricQuery,
    PrometheusSource,
    Scrape,
    ScrapeAuth,
    ScrapeSettings,
    SidecarsSource,
    WakeUps,
)
from intent_fleet.operator.errors import BacklogUnavailableError
from intent_fleet.protocol import BusClient, ClientSettings, Clock, RetryPolicy
from tests.integration.conftest import StartBus
from tests.support import scrape
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus
from tests.support.sidecar_rig import Procs, until
from tests.support.sidecarproc import free_port

GOAL = "resize"
WALL = 1_800_000_000.0


def fake_clock() -> Clock:
    """A fixed wall clock, and a monotonic one that advances 0.25 s per reading."""
    ticks = itertools.count()
    return Clock(wall=lambda: WALL, monotonic=lambda: next(ticks) * 0.25)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@asynccontextmanager
async def bus_client(
    url: str, key: str, session: aiohttp.ClientSession
) -> AsyncIterator[BusClient]:
    settings = ClientSettings(base_url=url, request_timeout=3, retry=RetryPolicy(attempts=1))
    async with BusClient(settings=settings, api_key=key, session=session) as client:
        yield client


def stats_source(client: BusClient, url: str, *, goal: str = GOAL) -> BusStatsSource:
    return BusStatsSource(
        bus=BusBacklog(client=client, bus_url=url),
        namespace="default",
        goal=goal,
        clock=fake_clock(),
    )


def metrics_source(
    session: aiohttp.ClientSession,
    url: str,
    *,
    goal: str = GOAL,
    token: str | None = None,
    metric: str = "intent_bus_backlog",
    settings: ScrapeSettings | None = None,
) -> PrometheusSource:
    labels = {"namespace": "default", "goal": goal}
    return PrometheusSource(
        scrape=Scrape(
            session=session,
            url=url,
            auth=ScrapeAuth(bearer_token=token) if token else None,
            settings=settings,
        ),
        backlog=MetricQuery(metric, {**labels, "state": "ready"}),
        in_flight=MetricQuery(metric, {**labels, "state": "claimed"}),
        clock=fake_clock(),
    )


async def unavailable(source: BacklogSource) -> str:
    with pytest.raises(BacklogUnavailableError) as caught:
        await source.read()
    return str(caught.value)


def counts(reading: BacklogReading) -> tuple[int, int]:
    return reading.backlog, reading.in_flight


# --- the bus: /stats and /metrics agree with what was published and claimed ---------


@pytest.fixture
def token_bus(start: StartBus, tmp_path: Path) -> BusProcess:
    """A bus whose /metrics takes a dedicated bearer token, as a scraper would have."""
    (tmp_path / "metrics-token").write_text("scrape-token-123\n")
    return start("--metrics-token-file", str(tmp_path / "metrics-token"))


async def test_bus_stats_and_metrics_count_ready_and_claimed(
    token_bus: BusProcess, session: aiohttp.ClientSession
) -> None:
    metrics_url = token_bus.url + "/metrics"
    async with RawBus(token_bus.url, admin_secret=token_bus.admin_secret) as raw:
        worker_key, _ = await raw.new_key("worker")
        async with bus_client(token_bus.url, worker_key, session) as client:
            sources: list[BacklogSource] = [
                stats_source(client, token_bus.url),
                metrics_source(session, metrics_url, token="scrape-token-123"),
            ]

            async def read_all() -> list[tuple[int, int]]:
                return [counts(await s.read()) for s in sources]

            # Nothing published: an empty queue, not a failure.
            assert await read_all() == [(0, 0), (0, 0)]
            for _ in range(5):
                await raw.publish(worker_key, {"goal": GOAL, "payload": {}})
            for _ in range(2):  # not claimable for an hour: must not wake workers
                await raw.publish(worker_key, {"goal": GOAL, "payload": {}, "delay": 3600})
            await raw.publish(worker_key, {"goal": "other-goal", "payload": {}})
            await raw.publish(worker_key, {"goal": GOAL, "payload": {}, "namespace": "elsewhere"})
            claimed = [await raw.claim(worker_key, goal=GOAL) for _ in range(2)]
            assert all(c is not None for c in claimed)
            assert await read_all() == [(3, 2), (3, 2)]

            first = claimed[0]
            assert first is not None
            r = await raw.fulfill(worker_key, first["id"], {"claim_token": first["claim_token"]})
            assert r.status == 200, r
            assert await read_all() == [(3, 1), (3, 1)]

            reading = await sources[0].read()
            assert reading.source == "busStats"
            assert reading.observed_at == WALL
            assert reading.latency_seconds == 0.25
            assert reading.capacity is None
            assert reading.unreachable == 0
            assert reading.observation().backlog == 3
            assert (await sources[1].read()).source == "prometheus"


async def test_metrics_with_escaped_goal_and_unknown_metric(
    token_bus: BusProcess, session: aiohttp.ClientSession
) -> None:
    url = token_bus.url + "/metrics"
    goal = 'odd "goal" \\ {braces}, = and #'
    async with RawBus(token_bus.url, admin_secret=token_bus.admin_secret) as raw:
        key = token_bus.admin_secret
        await raw.publish(key, {"goal": goal, "payload": {}})
        await raw.publish(key, {"goal": goal, "payload": {}})
    reading = await metrics_source(session, url, goal=goal, token="scrape-token-123").read()
    assert counts(reading) == (2, 0)
    typo = metrics_source(session, url, metric="intent_bus_backlogg", token="scrape-token-123")
    message = await unavailable(typo)
    assert message == (
        f"prometheus backlog source at {url}: metric intent_bus_backlogg not found in the answer"
    )


async def test_a_refused_metrics_token_is_named_but_not_shown(
    token_bus: BusProcess, session: aiohttp.ClientSession
) -> None:
    url = token_bus.url + "/metrics"
    message = await unavailable(metrics_source(session, url, token="wrong-token-456"))
    assert url in message
    assert "HTTP 401" in message
    assert "wrong-token-456" not in message
    assert "wrong-token-456" not in repr(ScrapeAuth(bearer_token="wrong-token-456"))


async def test_workers_on_one_bus_read_their_backlogs_in_one_request(
    bus: BusProcess, session: aiohttp.ClientSession
) -> None:
    """Ten workers' reads made together: one POST /stats, and each its own goal's figures."""
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("worker")
        for n in range(10):
            for _ in range(n):
                await raw.publish(key, {"goal": f"g{n}", "payload": {}})
        async with bus_client(bus.url, key, session) as client:
            shared = BusBacklog(client=client, bus_url=bus.url)
            await client.health()  # what the bus offers, asked once beforehand
            before = await bus_answers(raw, "/stats")
            sources = [
                BusStatsSource(bus=shared, namespace="default", goal=f"g{n}") for n in range(10)
            ]
            readings = await asyncio.gather(*(s.read() for s in sources))
            assert [r.backlog for r in readings] == list(range(10))
            assert shared.requests == 1
            assert await bus_answers(raw, "/stats") == before + 1
            # A claim shows as in flight on its goal only.
            assert await raw.claim(key, goal="g3") is not None
            readings = await asyncio.gather(*(s.read() for s in sources))
            assert [counts(r) for r in readings][2:5] == [(2, 0), (2, 1), (4, 0)]


async def bus_answers(raw: RawBus, route: str) -> float:
    """How many 200s the bus has given on ``route`` (its own count, from /metrics)."""
    status, _headers, body = await raw.raw(
        "GET", "/metrics", key=None, headers={"Authorization": f"Bearer {raw.admin_secret}"}
    )
    assert status == 200
    return scrape.value(body.decode(), f'intent_bus_responses_total{{route="{route}",code="200"}}')


async def test_an_older_bus_is_read_goal_by_goal(session: aiohttp.ClientSession) -> None:
    """A bus with backlog_stats but not batch_stats: one GET /stats per goal, as before."""
    asked: list[str] = []

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"protocol": "2.1", "features": ["backlog_stats"]})

    async def stats(request: web.Request) -> web.Response:
        goal = request.query["goal"]
        asked.append(goal)
        if goal == "broken":
            return web.json_response({"goals": "not a list"})
        entry = {"namespace": "default", "goal": goal, "ready": len(goal), "delayed": 0}
        entry |= {"claimed": 1, "dead": 0, "oldest_ready_age_seconds": 0.5}
        return web.json_response({"ts": 1.0, "goals": [entry]})

    goals = ["a", "bb", "ccc", "broken"]
    async with (
        serve({"/health": health, "/stats": stats}) as base,
        bus_client(base, "worker-key", session) as client,
    ):
        shared = BusBacklog(client=client, bus_url=base)
        sources = [BusStatsSource(bus=shared, namespace="default", goal=g) for g in goals]
        got = await asyncio.gather(*(s.read() for s in sources), return_exceptions=True)
    assert sorted(asked) == sorted(goals)
    assert [counts(r) for r in got[:3]] == [(1, 1), (2, 1), (3, 1)]  # type: ignore[arg-type]
    # One goal's bad answer is that goal's failure alone.
    assert isinstance(got[3], BacklogUnavailableError)
    assert "malformed answer" in str(got[3])


async def test_readers_of_one_endpoint_share_one_scrape(session: aiohttp.ClientSession) -> None:
    scrapes = 0

    async def metrics(_request: web.Request) -> web.Response:
        nonlocal scrapes
        scrapes += 1
        return web.Response(text='depth{q="a"} 3\ndepth{q="b"} 4\ndepth{q="c"} 5\n')

    async with serve({"/metrics": metrics}) as base:
        scrape = Scrape(session=session, url=base + "/metrics")
        sources = [
            PrometheusSource(scrape=scrape, backlog=MetricQuery("depth", {"q": q}))
            for q in ("a", "b", "c")
        ]
        readings = await asyncio.gather(*(s.read() for s in sources))
        assert [r.backlog for r in readings] == [3, 4, 5]  # each its own series
        assert scrapes == 1
        assert scrape.requests == 1
        await sources[0].read()  # a later poll scrapes again: nothing is cached
        assert scrapes == 2


async def test_a_goal_at_zero_is_woken_once_when_work_arrives(
    bus: BusProcess, session: aiohttp.ClientSession
) -> None:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key, _ = await raw.new_key("worker")
        async with bus_client(bus.url, key, session) as client:
            wakeups = WakeUps(client=client, bus_url=bus.url, wait_seconds=10)
            try:
                woken = {g: asyncio.Event() for g in ("a", "b", "c")}
                for goal, event in woken.items():
                    wakeups.watch("default", goal, event.set)
                wakeups.unwatch("default", "c", woken["c"].set)
                await until(lambda: _watching(bus), what="the bus holding the watch")
                await raw.publish(key, {"goal": "c", "payload": {}})  # not watched any more
                await raw.publish(key, {"goal": "b", "payload": {}})
                await asyncio.wait_for(woken["b"].wait(), 5)
                assert not woken["a"].is_set()
                assert not woken["c"].is_set()
                assert wakeups.watched() == {("default", "a")}  # b's wake-up was one-shot
                assert wakeups.woken == 1
            finally:
                await wakeups.aclose()


async def _watching(bus: BusProcess) -> bool:
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        status, _headers, body = await raw.raw(
            "GET", "/metrics", key=None, headers={"Authorization": f"Bearer {bus.admin_secret}"}
        )
    return status == 200 and scrape.value(body.decode(), "intent_bus_backlog_watches") >= 1


async def test_a_bus_without_backlog_stats_points_to_prometheus(
    start: StartBus, session: aiohttp.ClientSession
) -> None:
    legacy = start("--wire-version", "1.1")
    async with bus_client(legacy.url, legacy.admin_secret, session) as client:
        message = await unavailable(stats_source(client, legacy.url))
    assert message.startswith(f"busStats backlog source at {legacy.url}: ")
    assert "'backlog_stats'" in message
    assert "prometheus" in message


async def test_a_dead_bus_is_refused(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with bus_client(url, "some-worker-key", session) as client:
        message = await unavailable(stats_source(client, url))
    assert message == f"busStats backlog source at {url}: connection refused"
    message = await unavailable(metrics_source(session, url + "/metrics"))
    assert message == f"prometheus backlog source at {url}/metrics: connection refused"


# --- endpoints that answer badly -------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RELEASE: web.AppKey[asyncio.Event] = web.AppKey("release")


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """A local aiohttp server with these GET routes; yields its base URL."""
    app = web.Application()
    release = asyncio.Event()
    app[RELEASE] = release
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        # Slow handlers end now, so no server task outlives the test.
        release.set()
        await runner.cleanup()


def text(body: str, *, status: int = 200) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=body, status=status)

    return handler


def json_doc(doc: object) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(doc)

    return handler


async def slow(request: web.Request) -> web.Response:
    """Answers only when the server shuts down: longer than any timeout under test."""
    await request.app[RELEASE].wait()
    return web.Response(text="too late")


async def binary(_request: web.Request) -> web.Response:
    return web.Response(body=b"m 1\n\xff\xfe\n", content_type="text/plain")


async def redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound("http://127.0.0.1:1/elsewhere")


PAGE = "# TYPE intent_bus_backlog gauge\n"


async def test_malformed_and_unfit_answers_are_named(session: aiohttp.ClientSession) -> None:
    routes: dict[str, Handler] = {
        "/health": json_doc({"ok": True, "protocol": "2.1", "features": ["backlog_stats"]}),
        "/stats": text("garbage, not JSON"),
        "/html": text("<html><body>Sign in</body></html>"),
        "/binary": binary,
        "/big": text(PAGE + "# " + "x" * 4096 + "\n"),
        "/slow": slow,
        "/redirect": redirect,
        "/broken": text("oops", status=503),
        "/nan": text(
            PAGE + 'intent_bus_backlog{namespace="default",goal="resize",state="ready"} NaN\n'
        ),
        "/negative": text(
            PAGE + 'intent_bus_backlog{namespace="default",goal="resize",state="ready"} -2\n'
        ),
        "/fraction": text(
            PAGE + 'intent_bus_backlog{namespace="default",goal="resize",state="ready"} 2.25\n'
        ),
    }
    async with serve(routes) as base:
        async with bus_client(base, "worker-key-789", session) as client:
            message = await unavailable(stats_source(client, base))
        assert message.startswith(f"busStats backlog source at {base}: malformed answer: ")
        assert "worker-key-789" not in message

        small = ScrapeSettings(timeout_seconds=0.3, max_bytes=1024)

        async def failure(path: str) -> str:
            url = base + path
            message = await unavailable(metrics_source(session, url, settings=small))
            prefix = f"prometheus backlog source at {url}: "
            assert message.startswith(prefix), message
            return message.removeprefix(prefix)

        assert (await failure("/html")).startswith(
            "malformed answer: not Prometheus text format (line 1: expected a metric name"
        )
        assert await failure("/binary") == "malformed answer: not UTF-8 text"
        assert await failure("/big") == "the answer is larger than the 1024 byte limit"
        assert await failure("/slow") == "timed out after 0.3 s"
        assert (await failure("/redirect")).startswith("HTTP 302 redirect not followed")
        assert await failure("/broken") == "HTTP 503 Service Unavailable"
        assert await failure("/nan") == (
            'intent_bus_backlog{goal="resize",namespace="default",state="ready"} sums to nan, '
            "not a count"
        )
        assert "negative" in await failure("/negative")
        fraction = await metrics_source(session, base + "/fraction").read()
        assert counts(fraction) == (3, 0)  # rounded up: a partial item is still work


async def test_basic_auth_reaches_the_endpoint(session: aiohttp.ClientSession) -> None:
    seen: list[str] = []

    async def guarded(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text='queue_depth 7\nqueue_depth{shard="b"} 5\n')

    async with serve({"/metrics": guarded}) as base:
        scrape = Scrape(
            session=session,
            url=base + "/metrics",
            auth=ScrapeAuth(username="scraper", password="pw-secret"),
        )
        source = PrometheusSource(scrape=scrape, backlog=MetricQuery("queue_depth"))
        reading = await source.read()
    assert counts(reading) == (12, 0)
    assert seen == ["Basic " + base64.b64encode(b"scraper:pw-secret").decode()]
    assert "pw-secret" not in repr(source)
    assert "pw-secret" not in repr(scrape)


# --- sidecars -------------------------------------------------------------------------


async def test_sidecars_sum_in_flight_and_capacity_of_real_sidecars(
    bus: BusProcess, raw: RawBus, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    procs = Procs(tmp_path)
    try:
        await check_real_sidecars(bus, raw, procs, session)
    finally:
        procs.close()


async def check_real_sidecars(
    bus: BusProcess, raw: RawBus, procs: Procs, session: aiohttp.ClientSession
) -> None:
    key = bus.admin_secret
    handler = procs.handler()
    sidecars = [
        procs.sidecar(
            bus_url=bus.url,
            api_key=key,
            goal=GOAL,
            app_port=handler.port,
            extra_args=["--concurrency", str(concurrency)],
        )
        for concurrency in (2, 3)
    ]
    dead = f"http://127.0.0.1:{free_port()}"
    urls = [s.api_url for s in sidecars]
    fast = FanOutSettings(per_pod_timeout_seconds=1.0, max_concurrency=2)

    def source(pod_urls: list[str]) -> SidecarsSource:
        return SidecarsSource(session=session, pod_urls=pod_urls, settings=fast, clock=fake_clock())

    idle = await source(urls).read()
    assert (idle.backlog, idle.in_flight, idle.capacity, idle.unreachable) == (0, 0, 5, 0)

    # Jobs that outlast the test keep the handlers busy; the rig kills them afterwards.
    for _ in range(4):
        await raw.publish(key, {"goal": GOAL, "payload": {"sleep": 60}})

    async def busy() -> BacklogReading | None:
        reading = await source([*urls, dead]).read()
        return reading if reading.in_flight == 4 else None

    reading = await until(busy, timeout=20, what="4 jobs in flight")
    assert (reading.backlog, reading.capacity, reading.unreachable) == (0, 5, 1)
    assert reading.source == "sidecars"
    assert reading.observed_at == WALL

    message = await unavailable(source([dead, dead + "/"]))
    assert message.startswith("sidecars backlog source at 2 worker pod(s): no sidecar answered (")
    assert f"{dead}: connection refused" in message
    assert await unavailable(source([])) == (
        "sidecars backlog source at 0 worker pod(s): no worker pod to ask"
    )


def state_doc(in_flight: int, *, draining: bool = False, **extra: object) -> dict[str, object]:
    """The shape of the sidecar's real ``/v1/state`` answer."""
    return {
        "goal": GOAL,
        "namespace": "default",
        "in_flight": in_flight,
        "concurrency": 4,
        "idle_seconds": 0.0,
        "busy_ratio": 0.5,
        "handler_ready": True,
        "draining": draining,
        **extra,
    }


async def test_sidecars_draining_malformed_and_silent_pods(
    session: aiohttp.ClientSession,
) -> None:
    legacy = state_doc(1)
    del legacy["concurrency"]
    routes = {
        "/a/v1/state": json_doc(state_doc(3)),
        "/b/v1/state": json_doc(state_doc(2, draining=True)),
        "/c/v1/state": json_doc({"in_flight": "many"}),
        "/d/v1/state": text("not json"),
        "/e/v1/state": slow,
        "/f/v1/state": json_doc(legacy),
    }
    fast = FanOutSettings(per_pod_timeout_seconds=0.3)
    async with serve(routes) as base:
        pods = [f"{base}/{p}" for p in "abcde"]
        reading = await SidecarsSource(session=session, pod_urls=pods, settings=fast).read()
        # A draining pod's jobs still run, but it takes no new ones.
        assert (reading.in_flight, reading.capacity, reading.unreachable) == (5, 4, 3)

        with_legacy = [f"{base}/a", f"{base}/f"]
        unknown = await SidecarsSource(session=session, pod_urls=with_legacy).read()
        assert (unknown.in_flight, unknown.capacity) == (4, None)
        known = await SidecarsSource(
            session=session, pod_urls=with_legacy, fallback_concurrency=2
        ).read()
        assert (known.in_flight, known.capacity) == (4, 6)

        silent = [f"{base}/{p}" for p in "cde"] + [f"{base}/x"]
        message = await unavailable(SidecarsSource(session=session, pod_urls=silent, settings=fast))
    assert f"{base}/c: malformed answer: 'in_flight' must be an integer >= 0" in message
    assert f"{base}/d: malformed answer: not JSON" in message
    assert f"{base}/e: timed out after 0.3 s" in message
    assert message.endswith("; and 1 more)")
