"""Running a sidecar: detect the bus, wait for the handler, claim, serve the APIs, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable

import aiohttp

from intent_fleet.protocol import BusClient, Clock, IntentBusError, ProtocolVersion, RetryPolicy

from .app_channel import AppChannel
from .local_api import LocalApi, start_local_api, start_ops_api
from .metrics import SidecarMetrics
from .settings import SidecarSettings
from .worker import DEFAULT_LEASE_SECONDS, Features, Worker

__all__ = ["detect_features", "run_sidecar"]

log = logging.getLogger(__name__)


async def detect_features(
    bus: BusClient,
    *,
    stop: asyncio.Event,
    retry: RetryPolicy,
    rng: random.Random | None = None,
    clock: Clock | None = None,
) -> Features | None:
    """Ask the bus what it offers, retrying while it is unreachable; None if stopped first."""
    rng = rng or random.Random()
    clock = clock or Clock()
    failures = 0
    while not stop.is_set():
        try:
            health = await bus.health()
            protocol = health.protocol or await bus.protocol_version()
        except IntentBusError as exc:
            log.warning("bus not reachable yet; retrying", extra={"error": str(exc)})
            await clock.wait_for(stop, retry.delay(failures, rng, retry_after=exc.retry_after))
            failures += 1
            continue
        v2 = protocol is ProtocolVersion.V2_1
        return Features(
            long_poll="long_poll_claim" in health.features,
            extend=v2,
            release="release_claim" in health.features,
            batch="batch_claim" in health.features,
            interrupt="claim_interrupt" in health.features,
            protocol=protocol.value if protocol is not None else "unknown",
        )
    return None


async def _watch_handler(worker: Worker, app: AppChannel, *, interval: float, clock: Clock) -> None:
    while True:
        ready = await app.probe()
        worker.set_handler_ready(ready)
        # Look often until the handler first answers, then at the steady interval.
        await clock.sleep(interval if ready else min(interval, 0.2))


async def run_sidecar(
    settings: SidecarSettings,
    *,
    bus: BusClient,
    drain: asyncio.Event,
    abort: asyncio.Event,
    on_ready: Callable[[str], None] | None = None,
    metrics: SidecarMetrics | None = None,
    clock: Clock | None = None,
) -> None:
    """Run until drained. ``drain`` stops claiming; ``abort`` hands in-flight work back now."""
    metrics = metrics or SidecarMetrics()
    clock = clock or Clock()
    features = await detect_features(
        bus, stop=drain, retry=settings.claim.poll_backoff, clock=clock
    )
    if features is None:
        return
    _log_features(features, settings)
    connector = aiohttp.TCPConnector(limit=settings.claim.concurrency + 4, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as app_session:
        app = AppChannel(settings=settings.app, session=app_session, clock=clock)
        worker = Worker(
            settings=settings, bus=bus, app=app, features=features, metrics=metrics, clock=clock
        )
        api = LocalApi(settings=settings, bus=bus, worker=worker, metrics=metrics)
        async with _listeners(api, settings) as url:
            if on_ready is not None:
                on_ready(url)
            await _work(worker, app, settings, drain=drain, abort=abort, clock=clock)


def _log_features(features: Features, settings: SidecarSettings) -> None:
    log.info(
        "bus detected",
        extra={
            "protocol": features.protocol,
            "long_poll": features.long_poll,
            "extend": features.extend,
            "release": features.release,
            "batch": features.batch,
        },
    )
    if not features.extend and settings.app.timeout_seconds > DEFAULT_LEASE_SECONDS:
        log.warning(
            "handler timeout exceeds the lease on a bus without lease extension: a slow "
            "handler's intent may be claimed again by another worker",
            extra={
                "handler_timeout": settings.app.timeout_seconds,
                "lease": DEFAULT_LEASE_SECONDS,
            },
        )


@contextlib.asynccontextmanager
async def _listeners(api: LocalApi, settings: SidecarSettings) -> AsyncIterator[str]:
    """The local API (and the ops listener when asked for) while the body runs: its URL."""
    async with contextlib.AsyncExitStack() as servers:
        runner, url = await start_local_api(api)
        servers.push_async_callback(runner.cleanup)
        log.info("local API ready", extra={"url": url, "goal": settings.claim.goal})
        if settings.ops.enabled:
            ops_runner, ops_url = await start_ops_api(api)
            servers.push_async_callback(ops_runner.cleanup)
            log.info(
                "ops listener ready",
                extra={"url": ops_url, "drain_token_set": bool(settings.ops.drain_token)},
            )
            if not settings.ops.drain_token:
                log.warning("no drain token: /v1/drain on the ops listener is refused")
        yield url


async def _work(
    worker: Worker,
    app: AppChannel,
    settings: SidecarSettings,
    *,
    drain: asyncio.Event,
    abort: asyncio.Event,
    clock: Clock,
) -> None:
    """Claim until drained, with the handler watched and the signals wired to the worker."""
    interval = settings.app.health_interval_seconds
    async with asyncio.TaskGroup() as tg:
        helpers = [
            tg.create_task(_watch_handler(worker, app, interval=interval, clock=clock)),
            tg.create_task(_on(drain, worker.drain)),
        ]
        aborter = tg.create_task(_abort_on(abort, worker))
        await worker.run()
        for task in helpers:
            task.cancel()
        if not drain.is_set():
            # Drained through /v1/drain (a preStop hook): claim nothing, but keep both
            # listeners up (the handler, still shutting down, may use the local API; probes
            # go on); the sidecar itself stops on SIGTERM, after the handler.
            log.info("drained; serving the local API until told to stop")
            await drain.wait()
        # An abort may still be handing intents back (run() returns as soon as the
        # cancelled jobs are gone): let it finish, or they would wait out their leases.
        if not abort.is_set():
            aborter.cancel()


async def _on(event: asyncio.Event, action: Callable[[], None]) -> None:
    await event.wait()
    action()


async def _abort_on(event: asyncio.Event, worker: Worker) -> None:
    await event.wait()
    worker.drain()
    await worker.abandon("the sidecar was told to stop now")
