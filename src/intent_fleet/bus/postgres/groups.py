"""Requests that arrive together share one statement.

A replica under load receives many requests of one kind at once: nonces to record, claims
on one goal, fulfils. One statement per request makes the database's per-statement work
(parse, plan, commit, a disk flush for durable writes) and the client's (asyncpg encodes
and sends every statement) the dearest part of a request. A :class:`Grouped` sends the
first request's statement at once; requests that arrive while it is in flight wait for the
next one, which carries all of them (as SQLite's group commit shares an fsync). One round
trip per request when the bus is quiet, a fraction of one under load, and never a wait
for company.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Grouped", "Run"]

In = TypeVar("In")
Out = TypeVar("Out")

log = logging.getLogger(__name__)

#: Runs one group: one answer per item, in order; an exception in a slot fails only that
#: item, an exception raised fails the whole group.
Run = Callable[[Sequence[In]], Awaitable[Sequence["Out | Exception"]]]


class Grouped(Generic[In, Out]):
    """:meth:`submit` an item, get its answer; at most one group is in flight at a time."""

    def __init__(
        self,
        run: Run[In, Out],
        *,
        orphaned: Callable[[Out], Awaitable[None]] | None = None,
    ) -> None:
        """``orphaned`` is handed an answer whose request went away while its group was in
        flight (a claimed intent nobody will receive, say), to undo what it can."""
        self._run = run
        self._orphaned = orphaned
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: Groups sent, for tests and figures: fewer than the items under load.
        self.groups = 0

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = loop.create_task(self._run_all())
        return await future

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _run_all(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._run_group(group)
        finally:
            self._writer = None
            for _, future in self._waiting:
                future.cancel()
            self._waiting = []

    async def _run_group(self, group: list[tuple[In, asyncio.Future[Out]]]) -> None:
        # Requests that went away before their turn are not sent at all.
        group = [(item, future) for item, future in group if not future.done()]
        if not group:
            return
        self.groups += 1
        try:
            answers = await self._run([item for item, _ in group])
            if len(answers) != len(group):
                raise RuntimeError(f"a group of {len(group)} got {len(answers)} answers")
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as failed:  # each request of the group fails with the cause
            for _, future in group:
                if not future.done():
                    future.set_exception(failed)
            return
        for (_, future), answer in zip(group, answers, strict=True):
            if not future.done():
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
            elif not isinstance(answer, Exception):
                await self._undo(answer)

    async def _undo(self, answer: Out) -> None:
        if self._orphaned is None:
            return
        try:
            await self._orphaned(answer)
        except Exception as exc:  # the next group must still run
            log.warning("could not undo an orphaned answer", extra={"error": str(exc)})
