"""Utilisation from the worker pods themselves: each sidecar's ``GET /v1/state``.

The fallback for a bus that reports no backlog at all (docs/architecture.md, "Scaling"). It
sees only work already claimed, so backlog is always 0 here and it cannot wake a
fleet from zero (the CRD requires ``minReplicas >= 1`` with it). It reports:

* in flight = the sum of every answering sidecar's ``in_flight``, draining ones
  included (their jobs still run);
* capacity = the sum of ``concurrency`` (handler slots) of the answering sidecars
  that still claim; a draining pod is on its way out and takes no new work. A
  sidecar that does not report ``concurrency`` counts as ``fallback_concurrency``
  (the spec's ``handler.concurrency``); with neither, capacity is unknown (None);
* unreachable = pods that gave no usable answer (not running yet, gone, stuck).

The caller turns in-flight and capacity into a utilisation; readings of pods that
did not answer are not guessed. If no pod answers, the read fails.

:func:`poll_sidecars` is public: the pod-deletion-cost step reads the same states
to find idle pods.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson

from intent_fleet.operator.errors import FetchFailedError, MalformedAnswerError
from intent_fleet.protocol import Clock, Problems, is_int, is_number, redact_url, validate

from .base import BacklogReading, SourceName, unavailable
from .fetch import get_bounded

__all__ = [
    "STATE_PATH",
    "FanOutSettings",
    "PodFailure",
    "PodState",
    "SidecarsSource",
    "poll_sidecars",
]

logger = logging.getLogger(__name__)

#: The sidecar route that reports in-flight work (served on its ops listener).
STATE_PATH: Final = "/v1/state"
#: Failed pods named in the error when none answers; the rest are counted.
_NAMED_FAILURES: Final = 3


@dataclass(frozen=True, slots=True)
class FanOutSettings:
    """How the pods are asked."""

    #: Seconds one pod gets. ``/v1/state`` is answered from memory, so a sidecar
    #: slower than this is stuck or gone; waiting longer delays every decision.
    per_pod_timeout_seconds: float = 2.0
    #: Pods asked at once; bounds the sockets a big fleet makes the operator open.
    max_concurrency: int = 32
    #: Largest ``/v1/state`` answer read, bytes (a real one is about 200).
    max_bytes: int = 64 * 1024

    def problems(self) -> Problems:
        timeout = self.per_pod_timeout_seconds
        if not (math.isfinite(timeout) and timeout > 0):
            yield "per_pod_timeout_seconds", f"must be a positive number, got {timeout}"
        for name in ("max_concurrency", "max_bytes"):
            if getattr(self, name) < 1:
                yield name, f"must be >= 1, got {getattr(self, name)}"

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True)
class PodState:
    """What one sidecar said about itself."""

    url: str
    in_flight: int
    #: Handler slots; None when the sidecar does not say.
    concurrency: int | None
    draining: bool
    #: Seconds since its last job finished; None when the sidecar does not say.
    idle_seconds: float | None


@dataclass(frozen=True, slots=True)
class PodFailure:
    """A pod that gave no usable answer, and why."""

    url: str
    cause: str


async def poll_sidecars(
    session: aiohttp.ClientSession, urls: Sequence[str], *, settings: FanOutSettings
) -> list[PodState | PodFailure]:
    """Ask every pod at once (at most ``settings.max_concurrency`` in flight), in ``urls`` order."""
    gate = asyncio.Semaphore(settings.max_concurrency)

    async def one(url: str) -> PodState | PodFailure:
        async with gate:
            return await _poll_one(session, url, settings=settings)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(url)) for url in urls]
    return [t.result() for t in tasks]


async def _poll_one(
    session: aiohttp.ClientSession, url: str, *, settings: FanOutSettings
) -> PodState | PodFailure:
    try:
        fetched = await get_bounded(
            session,
            url.rstrip("/") + STATE_PATH,
            timeout_seconds=settings.per_pod_timeout_seconds,
            max_bytes=settings.max_bytes,
            headers={"Accept": "application/json"},
        )
        return _state_from(url, orjson.loads(fetched.body))
    except FetchFailedError as exc:
        cause = exc.cause
    except orjson.JSONDecodeError:
        cause = "malformed answer: not JSON"
    except _BadStateError as exc:
        cause = f"malformed answer: {exc}"
    logger.debug("sidecar %s gave no state: %s", redact_url(url), cause)
    return PodFailure(url=url, cause=cause)


class _BadStateError(MalformedAnswerError):
    """A ``/v1/state`` document with a missing or mistyped field."""


def _state_from(url: str, doc: object) -> PodState:
    if not isinstance(doc, dict):
        raise _BadStateError("expected a JSON object")
    in_flight = doc.get("in_flight")
    if not _is_count(in_flight):
        raise _BadStateError("'in_flight' must be an integer >= 0")
    concurrency = doc.get("concurrency")
    if concurrency is not None and not (_is_count(concurrency) and concurrency >= 1):
        raise _BadStateError("'concurrency' must be an integer >= 1")
    draining = doc.get("draining", False)
    if not isinstance(draining, bool):
        raise _BadStateError("'draining' must be a boolean")
    idle = doc.get("idle_seconds")
    if idle is not None and not is_number(idle):
        raise _BadStateError("'idle_seconds' must be a number")
    assert isinstance(in_flight, int)  # _is_count checked it; this tells mypy
    return PodState(
        url=url,
        in_flight=in_flight,
        concurrency=concurrency if isinstance(concurrency, int) else None,
        draining=draining,
        idle_seconds=float(idle) if idle is not None else None,
    )


def _is_count(value: object) -> bool:
    return is_int(value) and value >= 0


class SidecarsSource:
    """Sums in-flight work and capacity over the given pods' sidecars.

    ``pod_urls`` are the base URLs of the sidecars' ops listeners
    (``http://<pod IP>:<ops port>``) as the caller found them this poll.
    """

    name: Final = SourceName.SIDECARS

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        pod_urls: Sequence[str],
        fallback_concurrency: int | None = None,
        settings: FanOutSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        if fallback_concurrency is not None and fallback_concurrency < 1:
            raise ValueError("fallback_concurrency must be >= 1")
        self._session = session
        self._urls = tuple(pod_urls)
        self._fallback = fallback_concurrency
        self._settings = settings or FanOutSettings()
        self._clock = clock or Clock()

    def __repr__(self) -> str:
        return f"SidecarsSource(pods={len(self._urls)})"

    async def read(self) -> BacklogReading:
        started = self._clock.monotonic()
        where = f"{len(self._urls)} worker pod(s)"
        if not self._urls:
            raise unavailable(self.name, where, "no worker pod to ask")
        results = await poll_sidecars(self._session, self._urls, settings=self._settings)
        states = [r for r in results if isinstance(r, PodState)]
        failures = [r for r in results if isinstance(r, PodFailure)]
        if not states:
            named = "; ".join(f"{redact_url(f.url)}: {f.cause}" for f in failures[:_NAMED_FAILURES])
            more = len(failures) - _NAMED_FAILURES
            cause = f"no sidecar answered ({named}{f'; and {more} more' if more > 0 else ''})"
            raise unavailable(self.name, where, cause)
        return BacklogReading.timed(
            self._clock,
            source=self.name,
            started=started,
            backlog=0,
            in_flight=sum(s.in_flight for s in states),
            capacity=self._capacity(states),
            unreachable=len(failures),
        )

    def _capacity(self, states: Sequence[PodState]) -> int | None:
        total = 0
        for s in states:
            if s.draining:
                continue
            slots = s.concurrency if s.concurrency is not None else self._fallback
            if slots is None:
                return None
            total += slots
        return total
