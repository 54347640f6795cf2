"""Per-key token buckets."""

from __future__ import annotations

from intent_fleet.bus.ratelimit import RateLimiter

from .conftest import T0


def test_burst_then_refusal_with_retry_after() -> None:
    limiter = RateLimiter(rate=1.0, burst=3)
    assert limiter.enabled
    assert [limiter.acquire("k", now=T0) for _ in range(3)] == [None, None, None]
    assert limiter.acquire("k", now=T0) == 1


def test_retry_after_reflects_the_rate_and_partial_refill() -> None:
    limiter = RateLimiter(rate=0.25, burst=1)
    assert limiter.acquire("k", now=T0) is None
    assert limiter.acquire("k", now=T0) == 4  # a whole token takes 4 s
    assert limiter.acquire("k", now=T0 + 2) == 2  # half a token refilled
    assert limiter.acquire("k", now=T0 + 3.5) == 1  # rounded up, never 0
    assert limiter.acquire("k", now=T0 + 4) is None


def test_refill_over_time_is_capped_at_the_burst() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert limiter.acquire("k", now=T0) is None
    assert limiter.acquire("k", now=T0) is None
    assert limiter.acquire("k", now=T0) == 1
    assert limiter.acquire("k", now=T0 + 0.5) is None  # one token back after 0.5 s
    assert limiter.acquire("k", now=T0 + 0.5) is not None
    # A long pause refills to the burst, not beyond.
    results = [limiter.acquire("k", now=T0 + 1000) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.acquire("a", now=T0) is None
    assert limiter.acquire("a", now=T0) == 1
    assert limiter.acquire("b", now=T0) is None


def test_rate_zero_disables_limiting() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.acquire("k", now=T0) is None for _ in range(1000))
