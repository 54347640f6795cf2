"""Batcher: reads made together share one fetch; failures reach exactly their readers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from intent_fleet.operator.batching import Batcher


class Fetches:
    """A fetch that records what it was asked and answers key * 10 (or fails on cue)."""

    def __init__(self, *, fail: set[int] | None = None, raise_all: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail or set()
        self.raise_all = raise_all

    async def __call__(self, keys: Sequence[int]) -> Mapping[int, int | BaseException]:
        self.calls.append(list(keys))
        await asyncio.sleep(0)
        if self.raise_all:
            raise ConnectionError("the bus is down")
        return {k: (ValueError(f"bad {k}") if k in self.fail else k * 10) for k in keys}


async def test_reads_made_together_share_one_fetch() -> None:
    fetch = Fetches()
    batch: Batcher[int, int] = Batcher(fetch, window=0.01)
    got = await asyncio.gather(*(batch.get(k) for k in (1, 2, 3, 2)))
    assert got == [10, 20, 30, 20]
    assert fetch.calls == [[1, 2, 3]]  # the key asked twice, fetched once
    assert batch.fetches == 1


async def test_a_read_after_the_window_waits_for_the_next_fetch() -> None:
    fetch = Fetches()
    batch: Batcher[int, int] = Batcher(fetch, window=0.01)
    assert await batch.get(1) == 10
    assert await batch.get(1) == 10
    assert fetch.calls == [[1], [1]]  # nothing is cached


async def test_more_keys_than_a_fetch_takes_go_in_several() -> None:
    fetch = Fetches()
    batch: Batcher[int, int] = Batcher(fetch, window=0.01, most=3)
    got = await asyncio.gather(*(batch.get(k) for k in range(7)))
    assert got == [k * 10 for k in range(7)]
    assert sorted(len(c) for c in fetch.calls) == [1, 3, 3]


async def test_a_failed_key_fails_only_its_readers() -> None:
    batch: Batcher[int, int] = Batcher(Fetches(fail={2}), window=0.01)
    one, two = await asyncio.gather(batch.get(1), batch.get(2), return_exceptions=True)
    assert one == 10
    assert isinstance(two, ValueError) and "bad 2" in str(two)


async def test_a_failed_fetch_fails_every_reader_with_its_error() -> None:
    batch: Batcher[int, int] = Batcher(Fetches(raise_all=True), window=0.01)
    got = await asyncio.gather(batch.get(1), batch.get(2), return_exceptions=True)
    assert all(isinstance(e, ConnectionError) for e in got), got


async def test_a_key_the_fetch_left_out_is_a_lookup_error() -> None:
    async def partial(keys: Sequence[int]) -> Mapping[int, int | BaseException]:
        return {1: 1}

    batch: Batcher[int, int] = Batcher(partial, window=0.01)
    got = await asyncio.gather(batch.get(1), batch.get(2), return_exceptions=True)
    assert got[0] == 1
    assert isinstance(got[1], LookupError)


async def test_a_cancelled_reader_does_not_upset_the_others() -> None:
    batch: Batcher[int, int] = Batcher(Fetches(), window=0.02)
    leaving = asyncio.create_task(batch.get(1))
    staying = asyncio.create_task(batch.get(1))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == 10
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_aclose_ends_a_fetch_in_progress() -> None:
    started = asyncio.Event()

    async def slow(keys: Sequence[int]) -> Mapping[int, int | BaseException]:
        started.set()
        await asyncio.sleep(60)
        return {}

    batch: Batcher[int, int] = Batcher(slow, window=0.0)
    reader = asyncio.create_task(batch.get(1))
    await started.wait()
    await batch.aclose()
    with pytest.raises(asyncio.CancelledError):
        await reader
