"""IntentWorker status, per the Kubernetes API conventions: pure functions from facts to fields.

Conditions keep their ``lastTransitionTime`` while their status stays the same, so a condition
that flaps is visible and one that holds does not churn the object on every poll.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKLOG_AVAILABLE",
    "READY",
    "SCALING_ACTIVE",
    "SCALING_LIMITED",
    "Condition",
    "merge_conditions",
    "rfc3339",
]

READY = "Ready"
BACKLOG_AVAILABLE = "BacklogAvailable"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"


def rfc3339(at: float) -> str:
    """Kubernetes' time format (seconds precision, UTC, 'Z')."""
    moment = datetime.datetime.fromtimestamp(int(at), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool | None
    reason: str
    message: str

    def wire_status(self) -> str:
        return "Unknown" if self.status is None else ("True" if self.status else "False")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[Condition],
    generation: int,
    now: float,
) -> list[dict[str, Any]]:
    """The new conditions list: ``updates`` applied over ``previous``, transitions timed."""
    by_type = {str(c.get("type")): dict(c) for c in previous or ()}
    for update in updates:
        old = by_type.get(update.type)
        status = update.wire_status()
        changed = old is None or old.get("status") != status
        by_type[update.type] = {
            "type": update.type,
            "status": status,
            "observedGeneration": generation,
            "lastTransitionTime": rfc3339(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
            "reason": update.reason,
            "message": update.message,
        }
    order = [READY, BACKLOG_AVAILABLE, SCALING_ACTIVE, SCALING_LIMITED]
    return sorted(
        by_type.values(),
        key=lambda c: (order.index(c["type"]) if c["type"] in order else 99, c["type"]),
    )


def deployment_ready(deployment: Mapping[str, Any] | None, generation_seen: bool) -> Condition:
    """Ready: the Deployment is applied, observed, and has every replica it wants available."""
    if deployment is None:
        return Condition(
            READY, False, "DeploymentMissing", "the worker Deployment does not exist yet"
        )
    spec_replicas = int(deployment.get("spec", {}).get("replicas") or 0)
    status = deployment.get("status") or {}
    observed = int(status.get("observedGeneration") or 0) >= int(
        deployment.get("metadata", {}).get("generation") or 0
    )
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    if not (observed and generation_seen):
        return Condition(READY, False, "Progressing", "the Deployment controller has not caught up")
    if spec_replicas == 0:
        return Condition(READY, True, "ScaledToZero", "no backlog: the worker is scaled to zero")
    if available >= spec_replicas and updated >= spec_replicas:
        return Condition(
            READY, True, "DeploymentAvailable", f"{available}/{spec_replicas} replicas available"
        )
    return Condition(READY, False, "Progressing", f"{available}/{spec_replicas} replicas available")
