"""How long to wait before trying again: the one retry policy of the project.

Every loop that waits to try again (a request retried by the transport, a report the sidecar
repeats while its lease lasts, a lease extend, an empty claim poll, an operator tick that
failed) draws its wait from a :class:`RetryPolicy`: an exponentially growing ceiling, capped,
with jitter, so many clients that failed together do not retry together (which is what turns
a bus hiccup into a thundering herd). "Full" jitter draws from 0 to the ceiling and spreads
retries best; "equal" jitter draws from half the ceiling, for polls that must never spin. A
server's ``Retry-After`` is a floor on top of that, never ignored.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from .checked import Problems, validate
from .checks import is_int, is_number, json_kind

__all__ = ["MAX_RETRY_AFTER_SECONDS", "RetryPolicy", "parse_retry_after"]

#: A ``Retry-After`` longer than this is cut: a client parked for an hour by a
#: confused proxy looks dead; the caller can still decide to wait longer.
MAX_RETRY_AFTER_SECONDS = 300.0

# RFC 9110 delta-seconds are digits; fractions and a sign are accepted because
# servers send them, but not Python's float extras ("1_0", "inf", "nan").
_DELTA = re.compile(r"[+-]?\d+(?:\.\d+)?")

# 2**attempt beyond this exceeds any sane cap; stops OverflowError for huge attempts.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of the operations that are safe to repeat (reads, keyed publishes)."""

    #: Total tries including the first (1 = never retry). Three tries ride out a
    #: bus restart or a dropped connection without hiding a real outage for long.
    attempts: int = 3
    #: Ceiling of the first backoff, seconds; doubles per retry. 0.2 s keeps a
    #: transient blip nearly invisible to latency.
    base_seconds: float = 0.2
    #: Largest backoff ceiling, seconds, so later retries do not stall a worker.
    cap_seconds: float = 5.0
    #: ``full``: uniform(0, ceiling); ``equal``: uniform(ceiling / 2, ceiling).
    jitter: Literal["full", "equal"] = "full"

    def problems(self) -> Problems:
        if not is_int(self.attempts):
            yield "attempts", f"must be an integer, not {json_kind(self.attempts)}"
        elif self.attempts < 1:
            yield "attempts", f"must be >= 1 (it counts the first try), got {self.attempts}"
        for name in ("base_seconds", "cap_seconds"):
            value = getattr(self, name)
            if not (is_number(value) and value >= 0):
                yield name, f"must be a finite number >= 0, got {value!r}"
        if self.jitter not in ("full", "equal"):
            yield "jitter", f"must be 'full' or 'equal', got {self.jitter!r}"

    def __post_init__(self) -> None:
        validate(self)

    def delay(self, attempt: int, rng: random.Random, *, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based): jittered below
        ``min(cap, base * 2**attempt)``, and never less than the server's ``retry_after``.
        ``rng`` is injected so tests get a deterministic sequence."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0 ** min(attempt, _MAX_EXPONENT))
        wait = rng.uniform(ceiling / 2 if self.jitter == "equal" else 0.0, ceiling)
        return wait if retry_after is None else max(wait, retry_after)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or ``None`` when it says nothing usable.

    Accepts delta-seconds and HTTP-dates (relative to ``now``, unix seconds).
    A negative delay or a date in the past means "now" (0); garbage is
    ``None`` so the caller falls back to its own backoff; the result is capped
    at :data:`MAX_RETRY_AFTER_SECONDS`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA.fullmatch(text):
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" per RFC 5322: UTC, origin unknown
            when = when.replace(tzinfo=UTC)
        try:
            seconds = when.timestamp() - now
        except (OverflowError, ValueError, OSError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
