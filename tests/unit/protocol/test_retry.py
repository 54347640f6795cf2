"""Retry-After parsing and full-jitter bounds."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_fleet.protocol import RetryPolicy, parse_retry_after
from intent_fleet.protocol.retry import MAX_RETRY_AFTER_SECONDS

NOW = 1_700_000_000.0


def http_date(at: float) -> str:
    return email.utils.formatdate(at, usegmt=True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1", 1.0),
        ("  2 ", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("120", 120.0),
        ("100000", MAX_RETRY_AFTER_SECONDS),
        (http_date(NOW + 30), 30.0),
        (http_date(NOW - 30), 0.0),
        (http_date(NOW + 86400), MAX_RETRY_AFTER_SECONDS),
        ("Tue, 14 Nov 2023 22:13:50 -0000", 30.0),  # no zone: read as UTC
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("1_0", None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
        ("0x10", None),
        ("Mon, 99 Foo 2023 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises(header: str) -> None:
    value = parse_retry_after(header, now=NOW)
    assert value is None or 0.0 <= value <= MAX_RETRY_AFTER_SECONDS


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0, max_value=100),
    cap=st.floats(min_value=0, max_value=1000),
    seed=st.integers(),
)
def test_the_delay_stays_within_the_exponential_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    ceiling = min(cap, base * 2 ** min(attempt, 64))
    full = RetryPolicy(attempts=3, base_seconds=base, cap_seconds=cap)
    assert 0.0 <= full.delay(attempt, random.Random(seed)) <= ceiling
    equal = RetryPolicy(base_seconds=base, cap_seconds=cap, jitter="equal")
    assert ceiling / 2 <= equal.delay(attempt, random.Random(seed)) <= ceiling


def test_the_delay_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=5.0)
    rng = random.Random(0)
    assert max(policy.delay(0, rng) for _ in range(200)) <= 1.0
    assert max(policy.delay(2, rng) for _ in range(200)) > 2.0
    assert max(policy.delay(50, rng) for _ in range(200)) <= 5.0


def test_equal_jitter_never_waits_less_than_half_the_ceiling() -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=5.0, jitter="equal")
    rng = random.Random(0)
    assert min(policy.delay(2, rng) for _ in range(200)) >= 2.0


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(base_seconds=0.1, cap_seconds=0.2)
    assert policy.delay(0, random.Random(1), retry_after=7.0) == 7.0
    assert policy.delay(0, random.Random(1), retry_after=0.0) <= 0.1


def test_the_delay_is_deterministic_for_a_seeded_rng() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, random.Random(9)) for n in range(4)]
    again = [policy.delay(n, random.Random(9)) for n in range(4)]
    assert first == again


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(-1, random.Random())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": True},
        {"base_seconds": -1.0},
        {"cap_seconds": float("inf")},
        {"jitter": "none"},
    ],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
