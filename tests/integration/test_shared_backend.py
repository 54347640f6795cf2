"""The shared backend in-process, on a real PostgreSQL: what no HTTP client can time.

A request that goes away (its client hung up, the bus is stopping) while the statement
carrying its claim is in flight must not leave the intent claimed by nobody until its
lease runs out.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg

from intent_fleet.bus.backend import PublishRequest
from intent_fleet.bus.claim_index import ClaimFilter
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
        published = await backend.publish(caller, _request("g"), idempotency_key=None, body=b"")
        flt = ClaimFilter(caller="admin", namespace="default", goal="g")
        blocker = await asyncpg.connect(settings.database.url)
        try:
            # The claim's statement waits on a table lock, so it is in flight at the database.
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE intents IN ACCESS EXCLUSIVE MODE")
            gone = asyncio.create_task(backend.claim(flt, admin=True, wait=0))
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
            after = await backend.intent(published.id)
            assert isinstance(after, Intent)
            if after.status is Status.OPEN or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert after.status is Status.OPEN and after.attempts == 0
        assert after.claim_token is None and after.claimer is None
        assert after.updated_at > after.created_at  # it was claimed, and given back
        [again] = await backend.claim(flt, admin=True, wait=0)
        assert again.id == published.id and again.attempts == 1
    finally:
        await backend.close()
