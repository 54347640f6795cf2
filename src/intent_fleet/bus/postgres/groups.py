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
        closed: Callable[[], Exception] = lambda: RuntimeError("closed"),
    ) -> None:
        """``orphaned`` is handed an answer whose request went away before it received it
        (a claimed intent nobody will get, say), to undo what it can; ``closed`` is the
        error of requests still waiting when :meth:`aclose` is called, and of any after."""
        self._run = run
        self._orphaned = orphaned
        self._closed = closed
        self._stopped = False
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._current: list[tuple[In, asyncio.Future[Out]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._undoing: set[asyncio.Task[None]] = set()
        #: Groups sent, for tests and figures: fewer than the items under load.
        self.groups = 0

    async def submit(self, item: In) -> Out:
        if self._stopped:
            raise self._closed()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = loop.create_task(self._run_all())
        try:
            return await future
        except asyncio.CancelledError:
            # Answered, but the request went away before it resumed: undo it all the same.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._undo_later(future.result())
            raise

    async def aclose(self) -> None:
        self._stopped = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        # A writer cancelled before its first step never ran its own clean-up.
        self._writer = None
        self._fail_unanswered()
        for task in list(self._undoing):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _fail_unanswered(self) -> None:
        for _, future in [*self._current, *self._waiting]:
            if not future.done():
                future.set_exception(self._closed())
        self._current, self._waiting = [], []

    async def _run_all(self) -> None:
        try:
            while self._waiting:
                self._current, self._waiting = self._waiting, []
                await self._run_group(self._current)
                self._current = []
        finally:
            self._writer = None
            self._fail_unanswered()

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
            raise
        except Exception as failed:  # each request of the group fails with the cause
            for _, future in group:
                if not future.done():
                    future.set_exception(failed)
            return
        orphans: list[Out] = []
        for (_, future), answer in zip(group, answers, strict=True):
            if not future.done():
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
            elif not isinstance(answer, Exception):
                orphans.append(answer)
        # Only once every request has its answer, so none waits for an undo.
        for answer in orphans:
            await self._undo(answer)

    def _undo_later(self, answer: Out) -> None:
        task = asyncio.get_running_loop().create_task(self._undo(answer))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _undo(self, answer: Out) -> None:
        if self._orphaned is None:
            return
        try:
            await self._orphaned(answer)
        except Exception as exc:  # the next group must still run
            log.warning("could not undo an orphaned answer", extra={"error": str(exc)})
