"""The kopf handlers: thin, each one hands the object to the :class:`Controller`.

They are registered on a registry of their own (not kopf's global one), so importing this
module has no side effects and tests can build as many operators as they like.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import zlib
from typing import Any

import kopf

from intent_fleet.protocol import RetryPolicy

from .controller import Controller, Schedule
from .errors import KubeApiError
from .render import WORKER_LABEL
from .spec import API_GROUP, API_VERSION

__all__ = ["build_registry", "first_due", "next_due"]

log = logging.getLogger("intent_fleet.operator")

RESOURCE = (API_GROUP, API_VERSION, "intentworkers")
#: Wait before a tick that failed on the API server or the network runs again: 1 s,
#: doubling while it keeps failing, at most 30 s (an API server under strain gets room).
TICK_RETRY = RetryPolicy(base_seconds=1.0, cap_seconds=30.0, jitter="equal")


def build_registry() -> kopf.OperatorRegistry:
    """Every handler of the operator; the controller comes in through ``memo.controller``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A private registry has no default login: the pod's account first, then KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.index(*RESOURCE, id="workers", registry=registry)  # type: ignore[arg-type]
    def workers(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): body}

    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # A refused spec is reported by the controller (condition + event), not raised: kopf
        # retrying cannot fix it, and the autoscale daemon looks at it again.
        await _controller(memo).reconcile(body)

    @kopf.on.delete(*RESOURCE, registry=registry, optional=True)
    async def forget(uid: str, memo: kopf.Memo, **_: Any) -> None:
        _controller(memo).forget(uid)

    @kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=10.0)
    async def autoscale(
        stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        await poll_until_stopped(_controller(memo), body, stopped)

    @kopf.on.event(
        "apps", "v1", "deployments", labels={WORKER_LABEL: kopf.PRESENT}, registry=registry
    )
    async def deployment_changed(event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
        """Every worker Deployment change feeds the controller's view (polls read replicas
        there, not from the API server); drift (someone edited or deleted one) re-applies."""
        workers: kopf.Index[Any, Any] = kwargs["workers"]  # the index above, by name
        obj = event["object"]
        controller = _controller(memo)
        controller.seen_deployment(event["type"], dict(obj))
        meta = obj.get("metadata", {})
        owner = (meta.get("labels") or {}).get(WORKER_LABEL)
        found = workers.get((meta.get("namespace"), owner))
        if not found:
            return
        if event["type"] == "DELETED" or controller.drifted(obj):
            for body in found:
                try:
                    await controller.reconcile(body)
                except KubeApiError as error:
                    log.warning("re-applying %s/%s failed: %s", meta.get("namespace"), owner, error)

    return registry


def first_due(now: float, schedule: Schedule, rng: random.Random) -> float:
    """The first poll: at the group's phase of the interval (a hash of its name), or at a
    random one for a worker of its own."""
    interval = schedule.interval
    if interval <= 0:
        return now
    if schedule.group is None:
        return now + rng.uniform(0, interval)
    phase = zlib.crc32(schedule.group.encode()) / 2**32 * interval
    return now + (phase - now) % interval


def next_due(due: float, interval: float, *, now: float) -> float:
    """The next poll: one ``interval`` after this one was due. A poll that overran a whole
    interval (a slow bus) skips the slots it missed rather than catching up in a burst."""
    due += interval
    if due < now:
        due += math.ceil((now - due) / interval) * interval if interval > 0 else now - due
    return due


async def poll_until_stopped(
    controller: Controller, body: kopf.Body, stopped: kopf.DaemonStopped
) -> None:
    """One IntentWorker's polls, until kopf stops its daemon.

    Fixed-rate: each poll is due one interval after the last was due, not after it ended,
    so N workers at 1 s make N polls a second. Workers sharing a bus and key share a phase
    (their reads go out as one request); the phases of different groups, and of workers
    reading on their own, are spread over the interval. A worker at zero is woken out of
    turn when its goal gets work.
    """
    failures = 0
    rng = random.Random()
    loop = asyncio.get_running_loop()
    schedule = controller.schedule(body)
    due = first_due(loop.time(), schedule, rng)
    alarm = Alarm(stopped)
    try:
        while await alarm.sleep_until(due):
            woken = alarm.woken()
            try:
                now_due = await controller.tick(body, alarm.wake)
            except KubeApiError as error:
                log.warning(
                    "%s/%s: tick failed: %s", body.metadata.namespace, body.metadata.name, error
                )
                kopf.warn(body, reason="ScalingFailed", message=str(error))
                due = loop.time() + TICK_RETRY.delay(failures, rng)
                failures += 1
                continue
            if woken and due > loop.time():
                continue  # an extra poll: the regular one stays where it was
            if failures or now_due != schedule:
                # Back after failures, or the spec moved it: into its group's phase again.
                due, failures = first_due(loop.time(), now_due, rng), 0
            else:
                due = next_due(due, now_due.interval, now=loop.time())
            schedule = now_due
    finally:
        alarm.close()
        await controller.stop_waking(body, alarm.wake)


class Alarm:
    """What ends a poller's sleep: its due time, work for a worker at zero, or kopf stopping
    it. One event and one timer per sleep: a thousand pollers create no task per poll."""

    def __init__(self, stopped: kopf.DaemonStopped) -> None:
        self._loop = asyncio.get_running_loop()
        self._ring = asyncio.Event()
        self._woken = False
        self._stopped = stopped
        # The one task of the poller's life: it rings the alarm when kopf stops the daemon.
        self._stop_watch = asyncio.ensure_future(stopped.wait())
        self._stop_watch.add_done_callback(lambda _done: self._ring.set())

    def wake(self) -> None:
        """Work arrived for this worker at zero: poll now."""
        self._woken = True
        self._ring.set()

    def woken(self) -> bool:
        """Whether the poll about to run was woken out of turn (and forget it)."""
        woken, self._woken = self._woken, False
        return woken

    async def sleep_until(self, due: float) -> bool:
        """Until ``due`` (loop time) or a wake-up; False when the daemon is to stop."""
        if not self._ring.is_set():
            timer = self._loop.call_at(due, self._ring.set)
            try:
                await self._ring.wait()
            finally:
                timer.cancel()
        self._ring.clear()
        return not self._stopped

    def close(self) -> None:
        self._stop_watch.cancel()


def _controller(memo: kopf.Memo) -> Controller:
    controller = memo.get("controller")
    assert isinstance(controller, Controller), "the runner puts the controller into memo"
    return controller
