"""Requests that arrive together share one statement; nonces seen twice in a group."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from intent_fleet.bus.errors import DurabilityError
from intent_fleet.bus.postgres.groups import Grouped
from intent_fleet.bus.postgres.nonces import distinct, first_uses


class FakeTable:
    """A table of numbers: each run adds its items and answers their doubles."""

    def __init__(self) -> None:
        self.rows: set[int] = set()
        self.runs: list[list[int]] = []
        self.fail_with: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, items: Sequence[int]) -> list[int | Exception]:
        self.runs.append(list(items))
        await asyncio.sleep(0)  # in flight: later requests queue behind it
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.rows |= set(items)
        return [ValueError(f"no {i}") if i < 0 else i * 2 for i in items]


async def test_requests_that_arrive_together_share_one_run() -> None:
    table = FakeTable()
    grouped: Grouped[int, int] = Grouped(table.run)
    got = await asyncio.gather(*(grouped.submit(i) for i in range(20)))
    assert got == [i * 2 for i in range(20)]
    assert table.runs == [list(range(20))]
    assert grouped.groups == 1


async def test_requests_arriving_during_a_run_share_the_next_one() -> None:
    table = FakeTable()
    table.gate.clear()
    grouped: Grouped[int, int] = Grouped(table.run)
    first = asyncio.create_task(grouped.submit(1))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(grouped.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    table.gate.set()
    assert await first == 2
    assert [await t for t in later] == [4, 6, 8]
    assert table.runs == [[1], [2, 3, 4]]


async def test_an_exception_in_a_slot_fails_only_that_request() -> None:
    grouped: Grouped[int, int] = Grouped(FakeTable().run)
    got = await asyncio.gather(grouped.submit(1), grouped.submit(-1), return_exceptions=True)
    assert got[0] == 2
    assert isinstance(got[1], ValueError) and str(got[1]) == "no -1"


async def test_a_failed_run_fails_its_requests_and_the_next_group_runs_afresh() -> None:
    table = FakeTable()
    grouped: Grouped[int, int] = Grouped(table.run)
    table.fail_with = DurabilityError("the database is unreachable", cause="io")
    results = await asyncio.gather(grouped.submit(1), grouped.submit(2), return_exceptions=True)
    assert all(isinstance(r, DurabilityError) for r in results)
    table.fail_with = None
    assert await grouped.submit(1) == 2


async def test_a_request_gone_before_its_turn_is_not_sent_and_one_gone_in_flight_is_undone() -> (
    None
):
    table = FakeTable()
    table.gate.clear()
    undone: list[int] = []

    async def undo(answer: int) -> None:
        undone.append(answer)

    grouped: Grouped[int, int] = Grouped(table.run, orphaned=undo)
    in_flight = asyncio.create_task(grouped.submit(1))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(grouped.submit(2))
    kept = asyncio.create_task(grouped.submit(3))
    await asyncio.sleep(0.01)
    in_flight.cancel()
    queued.cancel()
    table.gate.set()
    assert await kept == 6
    for gone in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await gone
    assert table.runs == [[1], [3]]
    assert undone == [2]  # the in-flight request's answer (1 * 2) went back
    await grouped.aclose()


async def test_a_failing_undo_does_not_stop_the_next_group() -> None:
    table = FakeTable()
    table.gate.clear()

    async def undo(answer: int) -> None:
        raise DurabilityError("the database is unreachable", cause="io")

    grouped: Grouped[int, int] = Grouped(table.run, orphaned=undo)
    gone = asyncio.create_task(grouped.submit(1))
    await asyncio.sleep(0.01)
    gone.cancel()
    table.gate.set()
    await asyncio.sleep(0.01)
    assert await grouped.submit(5) == 10


def test_a_nonce_used_twice_in_one_group_is_new_the_first_time_only() -> None:
    rows = [("k", "same", 1.0), ("k", "same", 2.0), ("other-key", "same", 1.0), ("k", "old", 1.0)]
    assert distinct(rows) == [("k", "same", 1.0), ("other-key", "same", 1.0), ("k", "old", 1.0)]
    # The database added both "same" rows and knew "old" already.
    added = {("k", "same"), ("other-key", "same")}
    assert first_uses(rows, added) == [True, False, True, False]


async def test_closing_fails_waiting_requests_and_refuses_new_ones() -> None:
    table = FakeTable()
    table.gate.clear()
    grouped: Grouped[int, int] = Grouped(
        table.run, closed=lambda: DurabilityError("the bus is stopping")
    )
    in_flight = asyncio.create_task(grouped.submit(1))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(grouped.submit(2))
    await asyncio.sleep(0.01)
    await grouped.aclose()
    for request in (in_flight, queued):
        with pytest.raises(DurabilityError, match="stopping"):
            await request
    with pytest.raises(DurabilityError, match="stopping"):
        await grouped.submit(3)


async def test_closing_before_the_writer_ever_ran_fails_its_requests() -> None:
    grouped: Grouped[int, int] = Grouped(
        FakeTable().run, closed=lambda: DurabilityError("the bus is stopping")
    )
    waiting = asyncio.create_task(grouped.submit(1))
    await asyncio.sleep(0)  # submitted; the writer task made, not yet started
    await grouped.aclose()
    with pytest.raises(DurabilityError):
        await waiting


async def test_an_answer_whose_request_goes_away_before_resuming_is_undone() -> None:
    undone: list[int] = []

    async def undo(answer: int) -> None:
        undone.append(answer)

    grouped: Grouped[int, int] = Grouped(FakeTable().run, orphaned=undo)
    request = asyncio.create_task(grouped.submit(4))
    while grouped.groups == 0 or not _answered(grouped):
        await asyncio.sleep(0)
    request.cancel()  # the answer is set; the request has not resumed to take it
    with pytest.raises(asyncio.CancelledError):
        await request
    await grouped.aclose()
    assert undone == [8]


def _answered(grouped: Grouped[int, int]) -> bool:
    return grouped._writer is None  # the group ran and its answers are set
