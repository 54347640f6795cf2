"""IntentWorker status, per the Kubernetes API conventions: pure functions from facts to fields.

Conditions keep their ``lastTransitionTime`` while their status stays the same, so a condition
that flaps is visible and one that holds does not churn the object on every poll.

A status is written only when something a reader sees changes (:func:`needs_write`): replicas,
ready or desired replicas, the backlog, a condition, the generation observed, the last scale.
The timestamps that move on every poll (``backlogObservedTime``, ``lastActiveTime``, and the
autoscaler's memory in ``scaling``) ride along with those writes, and force one of their own
only once the memory is :attr:`StatusSettings.refresh_seconds` behind. An idle fleet writes
nothing at all.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from intent_fleet.protocol import Problems, is_int, is_number

__all__ = [
    "BACKLOG_AVAILABLE",
    "READY",
    "SCALING_ACTIVE",
    "SCALING_LIMITED",
    "Condition",
    "StatusSettings",
    "merge_conditions",
    "needs_write",
    "rfc3339",
]

READY = "Ready"
BACKLOG_AVAILABLE = "BacklogAvailable"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """How often an IntentWorker's status is written."""

    #: Seconds the autoscaler's memory in the status (when work was last seen, the
    #: recommendations that hold replicas up) may fall behind before a write refreshes it,
    #: with ``backlogObservedTime`` and ``lastActiveTime``. A restarted operator reads the
    #: memory as this much later than it says, so it never scales in early.
    refresh_seconds: float = 30.0

    def problems(self) -> Problems:
        if not (math.isfinite(self.refresh_seconds) and self.refresh_seconds >= 0):
            yield "refresh_seconds", f"must be >= 0 seconds, got {self.refresh_seconds}"


#: The fields a reader of the status sees change; a change in any of them is written at once.
SHOWN: Final = (
    "observedGeneration",
    "selector",
    "replicas",
    "readyReplicas",
    "desiredReplicas",
    "backlog",
    "lastScaleTime",
)


def needs_write(
    written: Mapping[str, Any] | None, status: Mapping[str, Any], *, refresh_seconds: float
) -> bool:
    """Whether ``status`` differs from the ``written`` one in what a reader sees, or in
    autoscaler memory more than ``refresh_seconds`` behind."""
    if written is None:
        return True
    if any(written.get(k) != status.get(k) for k in SHOWN):
        return True
    if _conditions(written) != _conditions(status):
        return True
    return _memory_behind(
        written.get("scaling") or {},
        status.get("scaling") or {},
        desired=status.get("desiredReplicas"),
        refresh_seconds=refresh_seconds,
    )


def _conditions(status: Mapping[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or ()
    }


def _memory_behind(
    written: Mapping[str, Any],
    scaling: Mapping[str, Any],
    *,
    desired: object,
    refresh_seconds: float,
) -> bool:
    for key in ("lastWorkSeen", "lastUnknown"):
        old, new = written.get(key), scaling.get(key)
        if old is None and new is None:
            continue
        # One side unset, or unreadable (edited by hand): ours replaces it.
        if not (is_number(old) and is_number(new)) or abs(new - old) >= refresh_seconds:
            return True
    # Only recommendations above the desired count hold replicas up; the rest are noise.
    floor = desired if is_int(desired) else 0
    old_held = _held(written, floor)
    new_held = _held(scaling, floor)
    if old_held.keys() != new_held.keys():
        return True
    return any(abs(new_held[r] - old_held[r]) >= refresh_seconds for r in new_held)


def _held(scaling: Mapping[str, Any], floor: int) -> dict[int, float]:
    """The latest time of each recommended count above ``floor``."""
    held: dict[int, float] = {}
    entries = scaling.get("recommendations")
    for entry in entries if isinstance(entries, list) else ():
        # A status someone edited by hand may hold anything; what cannot be read is skipped.
        if isinstance(entry, list) and len(entry) == 2:
            at, replicas = entry
            if is_number(at) and is_int(replicas) and replicas > floor:
                held[replicas] = max(held.get(replicas, at), at)
    return held


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
