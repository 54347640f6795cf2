"""How many workers an IntentWorker should run now: one pure decision per poll.

The operator reads a backlog, calls :func:`decide` and writes ``replicas`` to the
``/scale`` subresource; the returned :class:`ScalingState` goes into the resource's
status so that the next poll, in this process or the next one, carries on from it.
Nothing here reads a clock or talks to anything: ``now`` is wall-clock seconds
(the state outlives the process, so a monotonic clock would not do).

The rules follow KEDA, which splits scaling into two regimes:

* 0 <-> 1 belongs to activation and cooldown. From zero, workers start only once
  the work exceeds ``activation_backlog``; back to zero only once no work at all
  has been seen for ``cooldown_seconds``. Going to zero ignores the stabilisation
  window: the cooldown already demands that every observation over its span was
  empty, which is stricter than the window's "highest recommendation", and it is
  the knob the user set for that step. Waking from zero is a scale-out, which the
  window never delays anyway.
* 1 <-> N belongs to the HPA rules: ``ceil(work / target_per_replica)``; scale-out at
  once, scale-in only down to the highest recommendation of the stabilisation
  window; while zero is not allowed yet, one replica is the floor.

Then ``[min_replicas, max_replicas]``, then the step limits. A replica count outside
the bounds (the spec changed, someone scaled by hand) goes straight to the nearest
bound, as the HPA does: bounds are a promise, steps are only pacing. Steps do pace
every other move, the ones to and from zero included, so a user who limits scale-in
to 2 pods per decision sees 5 -> 3 -> 1 -> 0 rather than 5 -> 0.

When the backlog source fails, replicas are held (clamped into the bounds) and the
cooldown starts again: an empty queue cannot be vouched for while it was not seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from intent_fleet.operator.errors import InvalidSpecError
from intent_fleet.protocol import Problems, is_int, is_number, json_kind, validate

__all__ = ["Decision", "Limit", "Observation", "ScalingPolicy", "ScalingState", "decide"]


class Limit(StrEnum):
    """What kept replicas from the recommendation; the values are condition reasons."""

    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingPolicy:
    """One IntentWorker's autoscaling spec; every field is checked on construction.

    The defaults are KEDA's and the HPA's, so that a user who knows those tools
    gets no surprise.
    """

    #: Fewest replicas. 0 allows scale to zero (KEDA's default).
    min_replicas: int = 0
    #: Most replicas; the cap on cost and on load put on whatever the handlers call.
    max_replicas: int = 100
    #: Work items (ready backlog plus in flight) one replica is expected to handle.
    #: 4 is the sidecar's default concurrency: one replica's worth of handlers.
    target_per_replica: int = 4
    #: From zero replicas, start workers only when work exceeds this. 0 = any work
    #: wakes them; higher values let a trickle wait for a batch.
    activation_backlog: int = 0
    #: Seconds without any work seen before the last replica goes (KEDA's default).
    cooldown_seconds: float = 300.0
    #: Scale-in goes no lower than the highest recommendation made over this many
    #: seconds, so that a momentary dip does not kill pods that are needed again a
    #: poll later (the HPA's default).
    scale_down_stabilization_seconds: float = 300.0
    #: Most pods added per decision; None = no limit.
    scale_up_max_step: int | None = None
    #: Most pods removed per decision; None = no limit.
    scale_down_max_step: int | None = None

    def problems(self) -> Problems:
        found = [
            *_int_problems("min_replicas", self.min_replicas, least=0),
            *_int_problems("max_replicas", self.max_replicas, least=1),
            *_int_problems("target_per_replica", self.target_per_replica, least=1),
            *_int_problems("activation_backlog", self.activation_backlog, least=0),
            *_seconds_problems("cooldown_seconds", self.cooldown_seconds),
            *_seconds_problems(
                "scale_down_stabilization_seconds", self.scale_down_stabilization_seconds
            ),
        ]
        for name, step in (
            ("scale_up_max_step", self.scale_up_max_step),
            ("scale_down_max_step", self.scale_down_max_step),
        ):
            if step is not None:
                found += _int_problems(name, step, least=1)
        yield from found
        if not found and self.max_replicas < self.min_replicas:
            yield (
                "max_replicas",
                f"({self.max_replicas}) must be >= min_replicas ({self.min_replicas})",
            )

    def __post_init__(self) -> None:
        validate(self, error=InvalidSpecError.of)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the backlog source reported for one poll."""

    #: Intents ready to be claimed; None = the source failed and nothing is known.
    backlog: int | None
    #: Intents claimed but not finished: they still need the replicas running them.
    in_flight: int = 0

    def problems(self) -> Problems:
        if self.backlog is not None and self.backlog < 0:
            yield "backlog", f"must be >= 0, got {self.backlog}"
        if self.in_flight < 0:
            yield "in_flight", f"must be >= 0, got {self.in_flight}"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def work(self) -> int | None:
        return None if self.backlog is None else self.backlog + self.in_flight


@dataclass(frozen=True, slots=True, kw_only=True)
class ScalingState:
    """What one decision leaves for the next; lives in the resource's status.

    ``ScalingState()`` is the right start for a new resource and a safe fallback for
    a status that cannot be read: a fresh state never removes replicas before a
    full cooldown and a full stabilisation window have passed.
    """

    #: When work (backlog + in flight > 0) was last seen, in epoch seconds.
    last_work_seen: float | None = None
    #: When it was last unknown whether there was work: a failed read, or the first
    #: decision (nothing is known of the time before). The cooldown counts from the
    #: later of this and ``last_work_seen``.
    last_unknown: float | None = None
    #: (epoch seconds, raw desired replicas) made within the stabilisation window.
    #: Only those that could still be the window's highest are kept.
    recommendations: tuple[tuple[float, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with camelCase keys, as Kubernetes status fields are."""
        out: dict[str, Any] = {"recommendations": [[t, r] for t, r in self.recommendations]}
        if self.last_work_seen is not None:
            out["lastWorkSeen"] = self.last_work_seen
        if self.last_unknown is not None:
            out["lastUnknown"] = self.last_unknown
        return out

    def later_by(self, seconds: float) -> ScalingState:
        """Every time moved ``seconds`` later: how a restarted operator reads a status that
        may be up to that far behind, so that it never scales in sooner than it should."""
        return ScalingState(
            last_work_seen=None if self.last_work_seen is None else self.last_work_seen + seconds,
            last_unknown=None if self.last_unknown is None else self.last_unknown + seconds,
            recommendations=tuple((t + seconds, r) for t, r in self.recommendations),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingState:
        """Read back :meth:`to_dict`; missing keys read as unset (a merge patch drops nulls).

        Raises InvalidSpecError naming the field when the status was tampered with.
        """
        recommendations = data.get("recommendations", [])
        if not isinstance(recommendations, list):
            raise InvalidSpecError("status recommendations must be a list")
        pairs = []
        for item in recommendations:
            if not (isinstance(item, list | tuple) and len(item) == 2):
                raise InvalidSpecError("status recommendations: an entry is not [time, replicas]")
            at, replicas = _read_time("recommendations", item[0]), item[1]
            if at is None:
                raise InvalidSpecError("status recommendations: a time is missing")
            if not is_int(replicas) or replicas < 0:
                raise InvalidSpecError(
                    f"status recommendations: replicas must be an integer >= 0, "
                    f"not {json_kind(replicas)}"
                )
            pairs.append((at, replicas))
        return cls(
            last_work_seen=_read_time("lastWorkSeen", data.get("lastWorkSeen")),
            last_unknown=_read_time("lastUnknown", data.get("lastUnknown")),
            recommendations=tuple(pairs),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of one poll: what to set, why, and what to remember."""

    #: Replicas to write to the scale subresource.
    replicas: int
    #: ceil(work / target_per_replica) before any bound, window or step; None when held.
    desired: int | None
    #: Carry into the next decision (persist in status).
    state: ScalingState
    #: One line for an Event or a condition message.
    reason: str
    #: Work is present: above the activation threshold at zero, any work otherwise.
    #: False when held, as nothing was seen; the Active condition is then Unknown.
    active: bool
    #: The source failed and replicas were held at the current count.
    held: bool = False
    #: The bound or step that cut the recommendation short, if any.
    limited_reason: Limit | None = None

    @property
    def limited(self) -> bool:
        return self.limited_reason is not None


def decide(
    policy: ScalingPolicy,
    *,
    current_replicas: int,
    observation: Observation,
    state: ScalingState,
    now: float,
) -> Decision:
    """Decide the replica count for one poll; see the module docstring for the rules."""
    if current_replicas < 0:
        raise ValueError(f"current_replicas must be >= 0, got {current_replicas}")
    state = _begin(state, policy=policy, current=current_replicas, now=now)
    horizon = now - policy.scale_down_stabilization_seconds
    kept = tuple((t, r) for t, r in state.recommendations if t > horizon)
    work = observation.work
    if work is None:
        return _hold(policy, current=current_replicas, state=state, kept=kept, now=now)

    desired = -(-work // policy.target_per_replica)
    # A recommendation no larger than a newer one can never again be the window's
    # highest (it expires first), so dropping it keeps the status small.
    recommendations = (*((t, r) for t, r in kept if r > desired), (now, desired))
    state = ScalingState(
        last_work_seen=now if work > 0 else state.last_work_seen,
        last_unknown=state.last_unknown,
        recommendations=recommendations,
    )
    target, active, cause = _target(
        policy,
        current=current_replicas,
        work=work,
        desired=desired,
        wants=_describe(observation, desired=desired, policy=policy),
        idle_for=now - _cooldown_start(state),
        highest=max(r for _, r in recommendations),
    )
    replicas, limit = _constrain(target, current=current_replicas, policy=policy)
    return Decision(
        replicas=replicas,
        desired=desired,
        state=state,
        reason=_reason(cause, current=current_replicas, replicas=replicas, limit=limit),
        active=active,
        limited_reason=limit,
    )


def _hold(
    policy: ScalingPolicy,
    *,
    current: int,
    state: ScalingState,
    kept: tuple[tuple[float, int], ...],
    now: float,
) -> Decision:
    """The backlog is unknown: keep the replicas (within bounds) and restart the cooldown."""
    replicas, limit = _constrain(current, current=current, policy=policy)
    return Decision(
        replicas=replicas,
        desired=None,
        state=ScalingState(
            last_work_seen=state.last_work_seen, last_unknown=now, recommendations=kept
        ),
        reason=_reason("backlog source failed", current=current, replicas=replicas, limit=limit),
        active=False,
        held=True,
        limited_reason=limit,
    )


def _target(
    policy: ScalingPolicy,
    *,
    current: int,
    work: int,
    desired: int,
    wants: str,
    idle_for: float,
    highest: int,
) -> tuple[int, bool, str]:
    """The replica count the rules ask for before bounds and steps: (target, active, why)."""
    zero_allowed = policy.min_replicas == 0
    if current == 0 and zero_allowed and work <= policy.activation_backlog:
        return 0, False, f"work {work}, not over activation {policy.activation_backlog}"
    if desired >= current:
        return desired, work > 0, wants
    if zero_allowed and work == 0 and idle_for >= policy.cooldown_seconds:
        return 0, False, f"no work for {idle_for:.0f}s, cooldown {policy.cooldown_seconds:.0f}s"
    target = max(1, min(current, highest))
    if target > desired and highest > desired:
        window = policy.scale_down_stabilization_seconds
        return target, work > 0, f"{wants}; the last {window:.0f}s of recommendations hold {target}"
    if target > desired:
        cooldown = policy.cooldown_seconds
        # No elapsed seconds here: the message lands in a condition, and one that changed
        # every poll would be a status write every poll.
        return target, work > 0, f"no work; waiting out the {cooldown:.0f}s cooldown"
    return target, work > 0, wants


def _begin(state: ScalingState, *, policy: ScalingPolicy, current: int, now: float) -> ScalingState:
    """Mark the first decision as blind, and take the current count as its recommendation.

    Without this a new resource, or one whose status was lost, taking over a running
    Deployment would shed its pods on the first empty poll. The seed mirrors the
    HPA, which counts the replicas it finds as its first recommendation.
    """
    if state.last_work_seen is not None or state.last_unknown is not None:
        return state
    seed = ((now, current),) if policy.scale_down_stabilization_seconds > 0 else ()
    return ScalingState(last_unknown=now, recommendations=state.recommendations + seed)


def _cooldown_start(state: ScalingState) -> float:
    # _begin guarantees one of the two is set.
    return max(t for t in (state.last_work_seen, state.last_unknown) if t is not None)


def _constrain(target: int, *, current: int, policy: ScalingPolicy) -> tuple[int, Limit | None]:
    """Bounds, then step limits; a step never holds the count outside the bounds."""
    limit: Limit | None = None
    if target > policy.max_replicas:
        target, limit = policy.max_replicas, Limit.TOO_MANY_REPLICAS
    elif target < policy.min_replicas:
        target, limit = policy.min_replicas, Limit.TOO_FEW_REPLICAS
    up, down = policy.scale_up_max_step, policy.scale_down_max_step
    if up is not None and target > current + up:
        ceiling = max(current + up, policy.min_replicas)
        if ceiling < target:
            target, limit = ceiling, Limit.SCALE_UP_LIMIT
    if down is not None and target < current - down:
        floor = min(current - down, policy.max_replicas)
        if floor > target:
            target, limit = floor, Limit.SCALE_DOWN_LIMIT
    return target, limit


def _describe(observation: Observation, *, desired: int, policy: ScalingPolicy) -> str:
    work = f"backlog {observation.backlog}"
    if observation.in_flight:
        work += f" + {observation.in_flight} in flight"
    return f"{work} at {policy.target_per_replica} per replica wants {desired}"


def _reason(cause: str, *, current: int, replicas: int, limit: Limit | None) -> str:
    move = f"keeping {replicas}" if replicas == current else f"{current} -> {replicas}"
    return f"{cause}: {move}" + ("" if limit is None else f" ({limit.value})")


def _int_problems(name: str, value: object, *, least: int) -> list[tuple[str, str]]:
    if not is_int(value):
        return [(name, f"must be an integer, not {json_kind(value)}")]
    if value < least:
        return [(name, f"must be >= {least}, got {value}")]
    return []


def _seconds_problems(name: str, value: object) -> list[tuple[str, str]]:
    if not is_number(value):
        return [(name, f"must be a finite number of seconds, not {json_kind(value)}")]
    if value < 0:
        return [(name, f"must be >= 0, got {value}")]
    return []


def _read_time(name: str, value: object) -> float | None:
    if value is None:
        return None
    if not is_number(value):
        raise InvalidSpecError(f"status {name} must be epoch seconds, not {json_kind(value)}")
    return float(value)
