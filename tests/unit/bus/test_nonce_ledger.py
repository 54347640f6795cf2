"""Nonces recorded in groups: one write for the requests that arrive together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from intent_fleet.bus.errors import DurabilityError
from intent_fleet.bus.postgres.nonces import NonceLedger


class FakeTable:
    """The nonces table: a set, and what each write was handed."""

    def __init__(self) -> None:
        self.rows: set[tuple[str, str]] = set()
        self.writes: list[list[tuple[str, str, float]]] = []
        self.fail_with: Exception | None = None

    async def write(self, rows: Sequence[tuple[str, str, float]]) -> set[tuple[str, str]]:
        self.writes.append(list(rows))
        await asyncio.sleep(0)  # in flight: later requests queue behind it
        if self.fail_with is not None:
            raise self.fail_with
        new = {(k, n) for k, n, _ in rows} - self.rows
        self.rows |= new
        return new


async def test_requests_that_arrive_together_share_one_write() -> None:
    table = FakeTable()
    ledger = NonceLedger(table.write)
    got = await asyncio.gather(*(ledger.remember("k", f"n{i}", expires_at=1.0) for i in range(20)))
    assert got == [True] * 20
    assert len(table.writes) == 1 and len(table.writes[0]) == 20
    assert ledger.writes == 1


async def test_a_nonce_used_twice_is_refused_the_second_time_in_a_group_or_after() -> None:
    table = FakeTable()
    ledger = NonceLedger(table.write)
    together = await asyncio.gather(
        ledger.remember("k", "same", expires_at=1.0),
        ledger.remember("k", "same", expires_at=1.0),
        ledger.remember("other-key", "same", expires_at=1.0),
    )
    assert together == [True, False, True]
    assert table.writes[0] == [("k", "same", 1.0), ("other-key", "same", 1.0)]
    assert await ledger.remember("k", "same", expires_at=1.0) is False


async def test_a_failed_write_fails_its_requests_and_the_next_group_is_written_afresh() -> None:
    table = FakeTable()
    ledger = NonceLedger(table.write)
    table.fail_with = DurabilityError("the database is unreachable", cause="io")
    results = await asyncio.gather(
        ledger.remember("k", "a", expires_at=1.0),
        ledger.remember("k", "b", expires_at=1.0),
        return_exceptions=True,
    )
    assert all(isinstance(r, DurabilityError) for r in results)
    table.fail_with = None
    assert await ledger.remember("k", "a", expires_at=1.0) is True


async def test_a_request_that_goes_away_does_not_stop_the_others() -> None:
    table = FakeTable()
    ledger = NonceLedger(table.write)
    gone = asyncio.create_task(ledger.remember("k", "gone", expires_at=1.0))
    kept = asyncio.create_task(ledger.remember("k", "kept", expires_at=1.0))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept is True
    with pytest.raises(asyncio.CancelledError):
        await gone
    await ledger.aclose()
