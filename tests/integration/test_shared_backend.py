"""The shared backend in-process, on a real PostgreSQL: what no HTTP client can time.

A request that goes away (its client hung up, the bus is stopping) while the statement
carrying its claim is in flight must not leave the intent claimed by nobody until its
lease runs out. A failed intent's retry delay, which the SQL computes, follows the rule
both backends share, over hours of the backend's own clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import time

import asyncpg
import pytest

from intent_fleet.bus import lifecycle
from intent_fleet.bus.backend import PublishRequest
from intent_fleet.bus.lifecycle import ClaimFilter
from intent_fleet.bus.postgres import open_shared
from intent_fleet.bus.records import Caller, Intent, Status, Visibility
from intent_fleet.bus.settings import AuthSettings, BusSettings, DatabaseSettings
from tests.support.postgres import PostgresServer


def _request(goal: str) -> PublishRequest:
    return PublishRequest(
        namespace="default",
        goal=goal,
        payload=b"{}",
        visibility=Visibility.PUBLIC,
        priority=0,
        delay=0.0,
        max_attempts=3,
        backoff_base=1.0,
        target_worker=None,
        required_capability=None,
    )


async def test_a_claim_whose_request_goes_away_in_flight_is_given_back(
    postgres_server: PostgresServer,
) -> None:
    settings = BusSettings(
        auth=AuthSettings(admin_secret=secrets.token_hex(24)),
        database=DatabaseSettings(url=postgres_server.new_database()),
    )
    backend, _ = await open_shared(settings, time.time)
    await backend.start(asyncio.get_running_loop())
    try:
        caller = Caller(key_id="admin", admin=True)
        published = await backend.intents.publish(
            caller, _request("g"), idempotency_key=None, body=b""
        )
        flt = ClaimFilter(caller="admin", namespace="default", goal="g")
        blocker = await asyncpg.connect(settings.database.url)
        try:
            # The claim's statement waits on a table lock, so it is in flight at the database.
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE intents IN ACCESS EXCLUSIVE MODE")
            gone = asyncio.create_task(backend.intents.claim(flt, admin=True, wait=0))
            while not await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
                await asyncio.sleep(0.01)
            gone.cancel()  # the client hangs up
            await lock.rollback()
        finally:
            await blocker.close()
        await asyncio.gather(gone, return_exceptions=True)
        assert gone.cancelled()
        deadline = time.monotonic() + 10
        while True:  # the statement claimed it for nobody; the backend gives it back
            after = await backend.intents.intent(published.id)
            assert isinstance(after, Intent)
            if after.status is Status.OPEN or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert after.status is Status.OPEN and after.attempts == 0
        assert after.claim_token is None and after.claimer is None
        assert after.updated_at > after.created_at  # it was claimed, and given back
        [again] = await backend.intents.claim(flt, admin=True, wait=0)
        assert again.id == published.id and again.attempts == 1
    finally:
        await backend.close()


class _Clock:
    """The backend's clock, moved by the test: leases and delays follow it, not the wall."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_failed_intent_waits_as_the_shared_retry_rule_says(
    postgres_server: PostgresServer,
) -> None:
    """The SQL of a fail carries out lifecycle.retry_delay, doubling and cap included."""
    settings = BusSettings(
        auth=AuthSettings(admin_secret=secrets.token_hex(24)),
        database=DatabaseSettings(url=postgres_server.new_database()),
    )
    clock, seed = _Clock(), 7
    twin = random.Random(seed)  # replays the backend's jitter
    backend, _ = await open_shared(settings, clock, rng=random.Random(seed))
    await backend.start(asyncio.get_running_loop())
    try:
        caller = Caller(key_id="admin", admin=True)
        request = dataclasses.replace(_request("g"), max_attempts=20, backoff_base=3600.0)
        published = await backend.intents.publish(caller, request, idempotency_key=None, body=b"")
        flt = ClaimFilter(caller="admin", namespace="default", goal="g")
        delays = []
        for attempts in range(1, 7):
            [got] = await backend.intents.claim(flt, admin=True, wait=0)
            assert (got.id, got.attempts) == (published.id, attempts)
            clock.now += 1.5
            ended = await backend.intents.fail(caller, got.id, got.claim_token, f"try {attempts}")
            assert ended.status is Status.OPEN
            after = await backend.intents.intent(got.id)
            assert after is not None
            jitter = twin.uniform(0.0, lifecycle.RETRY_JITTER_SECONDS)
            expected = lifecycle.retry_delay(3600.0, attempts, jitter=jitter)
            assert after.run_at - clock.now == pytest.approx(expected)
            assert await backend.intents.claim(flt, admin=True, wait=0) == []  # still backing off
            delays.append(after.run_at - clock.now - jitter)
            clock.now = after.run_at
        # 2 h, 4 h, 8 h, 16 h, then a day at most.
        assert delays == pytest.approx([7200.0, 14400.0, 28800.0, 57600.0, 86400.0, 86400.0])
    finally:
        await backend.close()
