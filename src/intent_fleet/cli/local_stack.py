"""The pieces of a local, no-cluster worker: an embedded bus and a handler process.

``intent-fleet run`` and ``intent-fleet demo`` both stand on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from intent_fleet.bus import AuthSettings, BusSettings, ListenSettings, StorageSettings, serve

from .flags import secret_file

__all__ = [
    "HANDLER_STOP_GRACE",
    "SECRET_VARIABLES",
    "admin_secret",
    "embedded_bus",
    "handler_environment",
    "start_handler",
    "stop_handler",
]

#: Variables the handler must never see: they would hand it the bus.
SECRET_VARIABLES = ("INTENT_API_KEY", "INTENT_API_KEY_FILE", "INTENT_BUS_ADMIN_SECRET")
#: Seconds the handler gets to exit after SIGTERM before SIGKILL.
HANDLER_STOP_GRACE = 10.0
#: Seconds an embedded bus may take to come up.
BUS_START_TIMEOUT = 30.0


def admin_secret(state: Path) -> str:
    """The embedded bus's admin secret, kept (0600) so restarts keep working."""
    path = state / "admin-secret"
    if path.exists():
        return secret_file(path, "admin secret")
    state.mkdir(parents=True, exist_ok=True)
    secret = "local_" + secrets.token_hex(20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


@contextlib.asynccontextmanager
async def embedded_bus(state: Path) -> AsyncIterator[tuple[str, str]]:
    """A bus in this process on 127.0.0.1 (SQLite in ``state``): yields (url, admin secret)."""
    secret = admin_secret(state)
    settings = BusSettings(
        listen=ListenSettings(host="127.0.0.1", port=0),
        storage=StorageSettings(path=state / "intent-bus.db"),
        auth=AuthSettings(admin_secret=secret),
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        waiters: set[asyncio.Future[Any]] = {task, ready}
        await asyncio.wait(waiters, timeout=BUS_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises why the bus could not start
        if not ready.done():
            raise TimeoutError(f"the embedded bus did not start within {BUS_START_TIMEOUT:g} s")
        yield ready.result(), secret
    finally:
        stop.set()
        await task


def handler_environment(
    environ: Mapping[str, str], *, app_port: int, api_url: str
) -> dict[str, str]:
    """The handler's environment: ours minus every secret, plus where to listen and call."""
    env = {k: v for k, v in environ.items() if k not in SECRET_VARIABLES}
    env["PORT"] = str(app_port)
    env["INTENT_SIDECAR_URL"] = api_url
    return env


async def start_handler(
    cmd: list[str], *, app_port: int, api_url: str, log: Path | None = None
) -> asyncio.subprocess.Process:
    """Start the handler; its output goes to ``log`` when given (else ours)."""
    out = log.open("ab") if log is not None else None
    return await asyncio.create_subprocess_exec(
        *cmd,
        stdout=out,
        stderr=out,
        env=handler_environment(os.environ, app_port=app_port, api_url=api_url),
        # Its own session: Ctrl-C reaches us only, and we stop it after the drain.
        start_new_session=True,
    )


async def stop_handler(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=HANDLER_STOP_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
