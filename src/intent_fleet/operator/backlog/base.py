"""What every backlog source promises: one async ``read()`` giving one :class:`BacklogReading`.

A source is a small value built from an IntentWorker's spec and the long-lived
things injected into it (a :class:`~intent_fleet.protocol.BusClient`, an aiohttp
session, a :class:`~intent_fleet.protocol.Clock`). Building one is cheap, so the
operator builds it again when its inputs change (the sidecars source takes the
current pod URLs).

Every failure is a :class:`~intent_fleet.operator.errors.BacklogUnavailableError`
whose message names the source, the URL (its password hidden) and the cause, so
the ``BacklogAvailable`` condition tells a user what to fix. Messages never carry
API keys or tokens: only the caller holds those, and nothing here formats them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from intent_fleet.operator.errors import BacklogUnavailableError
from intent_fleet.operator.scaling import Observation
from intent_fleet.protocol import Clock, Problems, is_int, is_number, redact_url, validate

__all__ = [
    "BacklogReading",
    "BacklogSource",
    "SourceName",
    "unavailable",
]


class SourceName(StrEnum):
    """The sources, spelled as ``spec.backlogSource.type`` spells them."""

    BUS_STATS = "busStats"
    PROMETHEUS = "prometheus"
    SIDECARS = "sidecars"


@dataclass(frozen=True, slots=True, kw_only=True)
class BacklogReading:
    """One successful read of a backlog source."""

    #: Intents ready to be claimed now and waiting for a worker.
    backlog: int
    #: Intents claimed and being worked on: they still need the replicas running them.
    in_flight: int
    #: Wall-clock seconds (``Clock.wall``) when the answer arrived; goes into
    #: the status and feeds the scaler's ``now``.
    observed_at: float
    #: Which source answered (a :class:`SourceName` value).
    source: str
    #: Seconds the read took (``Clock.monotonic``; exported as a metric).
    latency_seconds: float
    #: Handler slots of the pods that answered and still claim (sidecars source
    #: only); ``None`` when the source does not know it.
    capacity: int | None = None
    #: Pods that gave no usable answer (sidecars source only).
    unreachable: int = 0

    def problems(self) -> Problems:
        for name in ("backlog", "in_flight", "unreachable"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                yield name, f"must be an integer >= 0, got {value!r}"
        if self.capacity is not None and not is_int(self.capacity):
            yield "capacity", f"must be an integer or None, got {self.capacity!r}"
        if not (is_number(self.latency_seconds) and self.latency_seconds >= 0):
            yield "latency_seconds", f"must be >= 0, got {self.latency_seconds!r}"

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def timed(
        cls,
        clock: Clock,
        *,
        source: str,
        started: float,
        backlog: int,
        in_flight: int,
        capacity: int | None = None,
        unreachable: int = 0,
    ) -> BacklogReading:
        """The reading of a read that began at ``started`` (a ``clock.monotonic()`` value)."""
        return cls(
            backlog=backlog,
            in_flight=in_flight,
            observed_at=clock.wall(),
            source=source,
            latency_seconds=max(0.0, clock.monotonic() - started),
            capacity=capacity,
            unreachable=unreachable,
        )

    def observation(self) -> Observation:
        """What :func:`~intent_fleet.operator.scaling.decide` consumes."""
        return Observation(backlog=self.backlog, in_flight=self.in_flight)


@runtime_checkable
class BacklogSource(Protocol):
    """One way of learning how much work an IntentWorker has."""

    @property
    def name(self) -> str:
        """The :class:`SourceName` value reported in readings and errors."""
        ...

    async def read(self) -> BacklogReading:
        """Read the backlog now, or raise :class:`BacklogUnavailableError`."""
        ...


def unavailable(source: str, url: str, cause: str) -> BacklogUnavailableError:
    """The one message shape: ``<source> backlog source at <url>: <cause>``."""
    return BacklogUnavailableError(f"{source} backlog source at {redact_url(url)}: {cause}")
