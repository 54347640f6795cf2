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
from collections.abc import Callable
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


async def _sleep(
    stopped: kopf.DaemonStopped, wake: asyncio.Event, *, until: float, clock: Callable[[], float]
) -> bool:
    """Until ``until``, or until woken; True when the daemon is to stop instead."""
    if stopped:
        return True
    if wake.is_set():
        return False
    woken = asyncio.ensure_future(wake.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait(
            {woken, stopping},
            timeout=max(0.0, until - clock()),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        woken.cancel()
        stopping.cancel()
    return bool(stopped)


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
    clock = asyncio.get_running_loop().time
    schedule = controller.schedule(body)
    due = first_due(clock(), schedule, rng)
    wake = asyncio.Event()
    try:
        while not await _sleep(stopped, wake, until=due, clock=clock):
            woken = wake.is_set()
            wake.clear()
            try:
                now_due = await controller.tick(body, wake.set)
            except KubeApiError as error:
                log.warning(
                    "%s/%s: tick failed: %s", body.metadata.namespace, body.metadata.name, error
                )
                kopf.warn(body, reason="ScalingFailed", message=str(error))
                due = clock() + TICK_RETRY.delay(failures, rng)
                failures += 1
                continue
            if woken and due > clock():
                continue  # an extra poll: the regular one stays where it was
            if failures or now_due != schedule:
                # Back after failures, or the spec moved it: into its group's phase again.
                due, failures = first_due(clock(), now_due, rng), 0
            else:
                due = next_due(due, now_due.interval, now=clock())
            schedule = now_due
    finally:
        await controller.stop_waking(body, wake.set)


def _controller(memo: kopf.Memo) -> Controller:
    controller = memo.get("controller")
    assert isinstance(controller, Controller), "the runner puts the controller into memo"
    return controller
