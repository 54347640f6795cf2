"""The kopf handlers: thin, each one hands the object to the :class:`Controller`.

They are registered on a registry of their own (not kopf's global one), so importing this
module has no side effects and tests can build as many operators as they like.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any

import kopf

from intent_fleet.protocol import RetryPolicy

from .controller import Controller
from .errors import KubeApiError
from .render import WORKER_LABEL
from .spec import API_GROUP, API_VERSION

__all__ = ["build_registry", "next_due"]

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
        controller = _controller(memo)
        failures = 0
        rng = random.Random()
        clock = asyncio.get_running_loop().time
        # Fixed-rate polls: each is due one interval after the last was due, not after it
        # ended, so N workers at 1 s make N polls a second. The first comes at a random
        # phase (the Deployment is already applied by then), spreading a fleet's polls out.
        due = clock() + rng.uniform(0, controller.first_interval(body))
        while not await stopped.wait(max(0.0, due - clock())):
            try:
                interval = await controller.tick(body)
                failures = 0
            except KubeApiError as error:
                log.warning(
                    "%s/%s: tick failed: %s", body.metadata.namespace, body.metadata.name, error
                )
                kopf.warn(body, reason="ScalingFailed", message=str(error))
                interval = TICK_RETRY.delay(failures, rng)
                failures += 1
            due = next_due(due, interval, now=clock())

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


def next_due(due: float, interval: float, *, now: float) -> float:
    """The next poll: one ``interval`` after this one was due. A poll that overran a whole
    interval (a slow bus) skips the slots it missed rather than catching up in a burst."""
    due += interval
    if due < now:
        due += math.ceil((now - due) / interval) * interval if interval > 0 else now - due
    return due


def _controller(memo: kopf.Memo) -> Controller:
    controller = memo.get("controller")
    assert isinstance(controller, Controller), "the runner puts the controller into memo"
    return controller
