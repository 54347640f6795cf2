"""The kopf handlers: thin, each one hands the object to the :class:`Controller`.

They are registered on a registry of their own (not kopf's global one), so importing this
module has no side effects and tests can build as many operators as they like.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from intent_fleet.protocol import RetryPolicy

from .controller import Controller
from .errors import KubeApiError
from .render import WORKER_LABEL
from .spec import API_GROUP, API_VERSION

__all__ = ["build_registry"]

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
        while not stopped:
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
            await stopped.wait(interval)

    @kopf.on.event(
        "apps", "v1", "deployments", labels={WORKER_LABEL: kopf.PRESENT}, registry=registry
    )
    async def deployment_changed(event: kopf.RawEvent, memo: kopf.Memo, **kwargs: Any) -> None:
        """Drift: someone edited or deleted a worker Deployment; apply ours again."""
        workers: kopf.Index[Any, Any] = kwargs["workers"]  # the index above, by name
        obj = event["object"]
        meta = obj.get("metadata", {})
        owner = (meta.get("labels") or {}).get(WORKER_LABEL)
        found = workers.get((meta.get("namespace"), owner))
        if not found:
            return
        controller = _controller(memo)
        if event["type"] == "DELETED" or controller.drifted(obj):
            for body in found:
                try:
                    await controller.reconcile(body)
                except KubeApiError as error:
                    log.warning("re-applying %s/%s failed: %s", meta.get("namespace"), owner, error)

    return registry


def _controller(memo: kopf.Memo) -> Controller:
    controller = memo.get("controller")
    assert isinstance(controller, Controller), "the runner puts the controller into memo"
    return controller
