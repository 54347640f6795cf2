"""Running a bus: open the database, rebuild memory, serve HTTP, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import time
from collections.abc import Callable

from aiohttp import web

from .admin import run_cleanup
from .app import build_app
from .auth import KeyRing, SignatureChecker
from .context import BusContext
from .engine import Engine
from .errors import StartupError
from .kv import KVStore
from .ratelimit import RateLimiter
from .settings import MIN_ADMIN_SECRET_CHARS, BusSettings, ListenSettings
from .store import Store

__all__ = ["run", "serve"]

log = logging.getLogger(__name__)

#: How long shutdown waits for in-flight requests (seconds). Long-polls are
#: answered at once, so only real work is waited for.
SHUTDOWN_GRACE_SECONDS = 10.0


async def serve(
    settings: BusSettings,
    *,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.time,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; raises :class:`StartupError` if the bus cannot start."""
    if not settings.auth.admin_secret:
        raise StartupError("no admin secret configured")
    if len(settings.auth.admin_secret) < MIN_ADMIN_SECRET_CHARS:
        raise StartupError(
            f"the admin secret is shorter than {MIN_ADMIN_SECRET_CHARS} characters; "
            "generate one with: openssl rand -hex 24"
        )
    store = Store(settings.storage.path)
    state = store.open(now=clock())
    engine = Engine(store=store, settings=settings, clock=clock)
    engine.load(state)
    # Everything loaded so far lives for the whole run: keep the collector from
    # rescanning it on every full collection.
    gc.freeze()
    ctx = BusContext(
        settings=settings,
        store=store,
        engine=engine,
        keys=KeyRing(admin_secret=settings.auth.admin_secret, keys=state.keys),
        kv=KVStore(state.kv),
        signatures=SignatureChecker(
            window_seconds=settings.auth.signature_window_seconds,
            require=settings.auth.require_signatures,
        ),
        limiter=RateLimiter(
            rate=settings.limits.rate_limit_per_second, burst=settings.limits.rate_limit_burst
        ),
        clock=clock,
        started_at=clock(),
    )
    loop = asyncio.get_running_loop()
    store.start(loop)
    engine.start(loop)
    runner = web.AppRunner(
        build_app(ctx),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    tls = _tls_context(settings.listen)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            settings.listen.host,
            settings.listen.port,
            reuse_address=True,
            ssl_context=tls,
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.listen.host}:{settings.listen.port}: {exc.strerror}"
            ) from exc
        host, port = runner.addresses[0][:2]
        scheme = "https" if tls is not None else "http"
        url = f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"
        log.info(
            "bus ready",
            extra={
                "url": url,
                "db": str(settings.storage.path),
                "live_intents": len(state.intents),
            },
        )
        if on_ready is not None:
            on_ready(url)
        async with asyncio.TaskGroup() as tasks:
            sweeper = tasks.create_task(_sweep_forever(ctx))
            await stop.wait()
            sweeper.cancel()
    finally:
        engine.release_waiters()
        await runner.cleanup()
        engine.stop()
        await store.close()


def _tls_context(listen: ListenSettings) -> ssl.SSLContext | None:
    if listen.tls_cert is None and listen.tls_key is None:
        return None
    if listen.tls_cert is None or listen.tls_key is None:
        raise StartupError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(listen.tls_cert, listen.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"cannot load the TLS certificate {listen.tls_cert} and key {listen.tls_key}: {exc}"
        ) from exc
    return context


async def _sweep_forever(ctx: BusContext) -> None:
    interval = ctx.settings.storage.cleanup_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_cleanup(ctx)
        except Exception:
            log.exception("retention sweep failed; retrying next interval")
        else:
            log.info("retention sweep", extra=report)


def run(settings: BusSettings, *, on_ready: Callable[[str], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop=stop, on_ready=on_ready)

    try:
        runner(main())
    except StartupError as exc:
        log.error("bus stopped", extra={"error": str(exc)})
        return 1
    return 0
