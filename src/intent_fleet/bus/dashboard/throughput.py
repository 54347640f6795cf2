"""Published, fulfilled and failed per second over the last minutes, kept in memory.

Sampled once a second from the bus's own count of answers per route (the one that feeds
``/metrics``), so nothing new is counted and nothing is stored: a restart starts afresh.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from typing import Final

__all__ = ["KINDS", "Throughput"]

#: What the chart shows, and the (route, status) answers that count as one.
KINDS: Final[Mapping[str, tuple[str, int]]] = {
    "published": ("/intent", 201),
    "fulfilled": ("/fulfill/{intent_id}", 200),
    "failed": ("/fail/{intent_id}", 200),
}


class Throughput:
    """Per-second counts of each kind, the newest last, ``seconds`` of them at most."""

    def __init__(self, seconds: int = 900) -> None:
        self.seconds = seconds
        self._series: dict[str, deque[int]] = {k: deque(maxlen=seconds) for k in KINDS}
        self._last: dict[str, int] | None = None
        self._at: int | None = None

    def sample(self, now: float, answers: Counter[tuple[str, int]]) -> None:
        """Record what was answered since the last sample; whole seconds missed (a busy
        loop) get zero, the count goes to the second the sample is taken in."""
        totals = {kind: answers[route] for kind, route in KINDS.items()}
        second = int(now)
        if self._last is None or self._at is None:
            self._last, self._at = totals, second
            return
        if second <= self._at:
            return
        gap = min(second - self._at - 1, self.seconds)
        for kind, series in self._series.items():
            series.extend([0] * gap)
            series.append(max(0, totals[kind] - self._last[kind]))
        self._last, self._at = totals, second

    def series(self) -> dict[str, list[int]]:
        """Each kind's counts, oldest first, padded with zeros to ``seconds``."""
        return {kind: [0] * (self.seconds - len(s)) + list(s) for kind, s in self._series.items()}
