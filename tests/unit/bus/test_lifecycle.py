"""The life-cycle rules both backends apply, on their own."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intent_fleet.bus import lifecycle
from intent_fleet.bus.lifecycle import ClaimFilter
from intent_fleet.bus.records import Intent, Status, Visibility
from intent_fleet.bus.settings import QueueSettings

from .conftest import make_intent


def _intent(**fields: object) -> Intent:
    return make_intent(1, **{"publisher": "alice", "visibility": Visibility.PRIVATE, **fields})


def test_retry_delays_double_with_each_attempt_up_to_a_day() -> None:
    delays = [lifecycle.retry_delay(5.0, n, jitter=0.0) for n in range(1, 5)]
    assert delays == [10.0, 20.0, 40.0, 80.0]
    assert lifecycle.retry_delay(3600.0, 5, jitter=0.0) == lifecycle.RETRY_DELAY_CAP_SECONDS
    assert lifecycle.retry_delay(3600.0, 5, jitter=1.5) == 86_400.0 + 1.5
    # The doubling stops, so a huge attempt count is no huge number (nor an overflow).
    assert lifecycle.retry_delay(1e-9, 10**6, jitter=0.0) == pytest.approx(1e-9 * 2**20)
    assert lifecycle.retry_delay(0.0, 3, jitter=0.25) == 0.25


@given(st.integers(min_value=0, max_value=2**31))
def test_jitter_stays_within_its_share(seed: int) -> None:
    jitter = lifecycle.retry_jitter(random.Random(seed))
    assert 0.0 <= jitter <= lifecycle.RETRY_JITTER_SECONDS


def test_an_extension_stays_within_the_protocol_bounds() -> None:
    queue = QueueSettings(min_extend_seconds=10, max_extend_seconds=3600)
    assert [lifecycle.extension(s, queue) for s in (-5, 0, 10, 600, 3600, 10**9)] == [
        10,
        10,
        10,
        600,
        3600,
        3600,
    ]


def test_a_release_gives_the_attempt_back_but_never_below_zero() -> None:
    assert [lifecycle.refunded(n) for n in (0, 1, 3)] == [0, 0, 2]


def test_the_last_attempt_or_a_final_failure_dies() -> None:
    assert not lifecycle.dies(1, 3)
    assert lifecycle.dies(3, 3)
    assert lifecycle.dies(4, 3)  # a limit lowered after the claims
    assert lifecycle.dies(1, 3, final=True)


def test_private_intents_are_their_publishers_alone() -> None:
    private, public = _intent(), _intent(visibility=Visibility.PUBLIC)
    assert lifecycle.owner_of(private) == "alice"
    assert lifecycle.owner_of(public) == lifecycle.PUBLIC_OWNER
    assert lifecycle.sees("alice", "alice") and lifecycle.sees("bob", lifecycle.PUBLIC_OWNER)
    assert not lifecycle.sees("bob", "alice")
    assert lifecycle.sees(None, "alice")  # the whole bus's view


def test_a_claim_takes_only_what_its_worker_may() -> None:
    flt = ClaimFilter(
        caller="bob", namespace="default", goal="g", worker_id="w1", capabilities=frozenset({"gpu"})
    )
    assert flt.accepts(_intent())
    assert flt.accepts(_intent(target_worker="w1", required_capability="gpu"))
    assert not flt.accepts(_intent(target_worker="w2"))
    assert not flt.accepts(_intent(required_capability="tpu"))
    assert not ClaimFilter(caller="bob", namespace="default", goal="g").accepts(
        _intent(target_worker="w1")
    )
    assert not ClaimFilter(
        caller="admin", namespace="default", goal="g", publisher="carol"
    ).accepts(_intent())


def test_only_an_admin_may_claim_another_publishers_private_intents() -> None:
    named = ClaimFilter(caller="bob", namespace="default", goal="g", publisher="alice")
    assert named.private_owner(admin=False) == "bob"
    assert named.private_owner(admin=True) == "alice"
    assert ClaimFilter(caller="admin", namespace="d", goal=None).private_owner(admin=True) == (
        "admin"
    )


def test_admin_changes_take_only_the_statuses_they_name() -> None:
    assert {Status.OPEN, Status.CLAIMED, Status.DEAD} == lifecycle.CANCELLABLE
    assert {Status.DEAD, Status.CANCELLED} == lifecycle.RETRYABLE
    refused = lifecycle.cannot_cancel(Status.FULFILLED)
    assert (refused.status, refused.code) == (409, "conflict")
    assert "already fulfilled" in refused.message
    assert "still live" in lifecycle.cannot_retry(Status.CLAIMED).message
    assert "Intent is fulfilled" in lifecycle.cannot_retry(Status.FULFILLED).message
