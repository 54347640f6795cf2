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

from intent_fleet.protocol import Now, redact_url

from .admin import run_cleanup
from .app import build_app
from .auth import SignatureChecker
from .backend import Backend
from .context import BusContext
from .errors import StartupError
from .local import open_local
from .settings import BusSettings, ListenSettings

__all__ = ["run", "serve"]

log = logging.getLogger(__name__)

#: How long shutdown waits for in-flight requests (seconds). Long-polls are
#: answered at once, so only real work is waited for.
SHUTDOWN_GRACE_SECONDS = 10.0


async def serve(
    settings: BusSettings,
    *,
    stop: asyncio.Event,
    clock: Now = time.time,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; raises :class:`StartupError` if the bus cannot start."""
    ctx, live = await _open(settings, clock)
    await ctx.backend.start(asyncio.get_running_loop())
    runner = web.AppRunner(
        build_app(ctx),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    await runner.setup()
    try:
        url = await _listen(runner, settings.listen)
        log.info("bus ready", extra={"url": url, "db": _shown_db(settings), "live_intents": live})
        if on_ready is not None:
            on_ready(url)
        async with asyncio.TaskGroup() as tasks:
            sweeper = tasks.create_task(_sweep_forever(ctx))
            sampler = tasks.create_task(_sample_throughput(ctx))
            await stop.wait()
            sweeper.cancel()
            sampler.cancel()
    finally:
        ctx.backend.release_waiters()
        await runner.cleanup()
        await ctx.backend.close()


async def _open(settings: BusSettings, clock: Now) -> tuple[BusContext, int]:
    """The database opened and memory rebuilt from it: the context, and how many intents
    are live."""
    backend: Backend
    if settings.database.enabled:
        # Imported only here: the embedded bus needs no PostgreSQL driver.
        from .postgres import open_shared  # noqa: PLC0415

        backend, live = await open_shared(settings, clock)
    else:
        backend, live = open_local(settings, clock)
    # Everything loaded so far lives for the whole run: keep the collector from
    # rescanning it on every full collection.
    gc.freeze()
    ctx = BusContext(
        settings=settings,
        backend=backend,
        signatures=SignatureChecker(
            window_seconds=settings.auth.signature_window_seconds,
            require=settings.auth.require_signatures,
        ),
        clock=clock,
        started_at=clock(),
    )
    return ctx, live


def _shown_db(settings: BusSettings) -> str:
    if settings.database.enabled:
        return redact_url(settings.database.url)
    return str(settings.storage.path)


async def _listen(runner: web.AppRunner, listen: ListenSettings) -> str:
    """Bind the listener; the URL it serves on (the port the kernel chose for port 0)."""
    tls = _tls_context(listen)
    site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True, ssl_context=tls)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {listen.host}:{listen.port}: {exc.strerror}") from exc
    host, port = runner.addresses[0][:2]
    scheme = "https" if tls is not None else "http"
    return f"{scheme}://{host}:{port}" if ":" not in host else f"{scheme}://[{host}]:{port}"


def _tls_context(listen: ListenSettings) -> ssl.SSLContext | None:
    # ListenSettings holds both or neither.
    if listen.tls_cert is None or listen.tls_key is None:
        return None
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


async def _sample_throughput(ctx: BusContext) -> None:
    """The dashboard's chart: what was answered, each second."""
    while True:
        ctx.throughput.sample(ctx.clock(), ctx.responses)
        await asyncio.sleep(1.0 - ctx.clock() % 1.0)


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
