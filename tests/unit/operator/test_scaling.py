"""The autoscaling decision: worked examples, properties, and a simulated queue."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from intent_fleet.operator.errors import InvalidSpecError
from intent_fleet.operator.scaling import (
    Decision,
    Limit,
    Observation,
    ScalingPolicy,
    ScalingState,
    decide,
)

NOW = 1_700_000_000.0
#: Steady policy for the examples: no window, no cooldown, unless a test sets them.
PLAIN = ScalingPolicy(
    min_replicas=0,
    max_replicas=10,
    target_per_replica=10,
    cooldown_seconds=0.0,
    scale_down_stabilization_seconds=0.0,
)
#: A state that has seen work long ago, so neither the cooldown nor a first-decision
#: seed is in play unless a test asks for them.
SETTLED = ScalingState(last_work_seen=NOW - 86_400)


def step(
    policy: ScalingPolicy, current: int, observation: Observation, state: ScalingState, now: float
) -> Decision:
    return decide(policy, current_replicas=current, observation=observation, state=state, now=now)


def run(
    policy: ScalingPolicy,
    current: int,
    backlog: int | None,
    *,
    in_flight: int = 0,
    state: ScalingState = SETTLED,
    now: float = NOW,
) -> Decision:
    return step(policy, current, Observation(backlog, in_flight), state, now)


# --- policy validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_replicas": -1}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"min_replicas": 5, "max_replicas": 4}, "max_replicas"),
        ({"target_per_replica": 0}, "target_per_replica"),
        ({"activation_backlog": -1}, "activation_backlog"),
        ({"cooldown_seconds": -0.5}, "cooldown_seconds"),
        ({"cooldown_seconds": float("inf")}, "cooldown_seconds"),
        ({"scale_down_stabilization_seconds": float("nan")}, "scale_down_stabilization_seconds"),
        ({"scale_up_max_step": 0}, "scale_up_max_step"),
        ({"scale_down_max_step": -2}, "scale_down_max_step"),
        ({"max_replicas": True}, "max_replicas"),
        ({"target_per_replica": 2.5}, "target_per_replica"),
    ],
)
def test_policy_rejects_a_bad_field_by_name(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpecError, match=field):
        ScalingPolicy(**changes)  # type: ignore[arg-type]


def test_policy_reports_every_problem_at_once() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        ScalingPolicy(min_replicas=-1, target_per_replica=0, cooldown_seconds=-1)
    for name in ("min_replicas", "target_per_replica", "cooldown_seconds"):
        assert name in str(caught.value)


def test_policy_defaults_are_valid_and_allow_scale_to_zero() -> None:
    policy = ScalingPolicy()
    assert policy.min_replicas == 0
    assert policy.max_replicas >= 1


def test_observation_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="backlog"):
        Observation(-1)
    with pytest.raises(ValueError, match="in_flight"):
        Observation(3, -1)


def test_negative_current_replicas_is_a_bug() -> None:
    with pytest.raises(ValueError, match="current_replicas"):
        run(PLAIN, -1, 0)


# --- worked examples -------------------------------------------------------------------


def test_backlog_over_target_rounds_up() -> None:
    decision = run(PLAIN, 1, 37)
    # 37 items at 10 per replica need 4 replicas (the fourth takes the last 7).
    assert (decision.replicas, decision.desired) == (4, 4)
    assert decision.active and not decision.limited and not decision.held
    assert "37" in decision.reason and "10 per replica" in decision.reason
    assert "1 -> 4" in decision.reason


def test_in_flight_work_counts_too() -> None:
    # 5 waiting + 16 being handled = 21 items: 3 replicas; dropping the in-flight ones
    # would scale in under pods that are still busy.
    decision = run(PLAIN, 3, 5, in_flight=16)
    assert decision.replicas == 3
    assert decision.desired == 3


def test_capped_at_max_replicas() -> None:
    decision = run(PLAIN, 2, 1000)
    assert decision.desired == 100
    assert decision.replicas == 10
    assert decision.limited_reason is Limit.TOO_MANY_REPLICAS
    assert "TooManyReplicas" in decision.reason


def test_held_up_at_min_replicas() -> None:
    policy = replace(PLAIN, min_replicas=2)
    decision = run(policy, 2, 0)
    assert decision.replicas == 2
    assert decision.desired == 0
    assert decision.limited_reason is Limit.TOO_FEW_REPLICAS


def test_activation_threshold_at_zero() -> None:
    policy = replace(PLAIN, activation_backlog=5)
    asleep = run(policy, 0, 5)
    assert asleep.replicas == 0
    assert not asleep.active
    assert "activation 5" in asleep.reason
    awake = run(policy, 0, 6)
    assert awake.replicas == 1
    assert awake.active


def test_activation_threshold_does_not_send_running_workers_away() -> None:
    # Below activation but above zero: the one running replica keeps working.
    policy = replace(PLAIN, activation_backlog=5)
    decision = run(policy, 1, 3)
    assert decision.replicas == 1
    assert decision.active


def test_waking_from_zero_goes_straight_to_the_need() -> None:
    decision = run(PLAIN, 0, 55)
    assert decision.replicas == 6


def test_cooldown_counts_from_last_work_seen() -> None:
    policy = replace(PLAIN, cooldown_seconds=300.0)
    state = ScalingState(last_work_seen=NOW)
    assert run(policy, 1, 0, state=state, now=NOW + 299).replicas == 1
    gone = run(policy, 1, 0, state=state, now=NOW + 300)
    assert gone.replicas == 0
    assert not gone.active
    assert "1 -> 0" in gone.reason


def test_cooldown_is_not_restarted_by_scaling() -> None:
    # Work last seen at NOW; the fleet then scales 3 -> 1 at NOW + 200. The cooldown
    # still ends at NOW + 300, not NOW + 500.
    policy = replace(PLAIN, cooldown_seconds=300.0)
    state = run(policy, 3, 25, state=SETTLED, now=NOW).state
    shrunk = run(policy, 3, 0, state=state, now=NOW + 200)
    assert shrunk.replicas == 1
    assert "cooldown" in shrunk.reason
    assert run(policy, 1, 0, state=shrunk.state, now=NOW + 300).replicas == 0


def test_work_during_cooldown_starts_it_again() -> None:
    policy = replace(PLAIN, cooldown_seconds=300.0)
    state = run(policy, 1, 0, state=ScalingState(last_work_seen=NOW), now=NOW + 250).state
    state = run(policy, 1, 2, state=state, now=NOW + 280).state
    assert run(policy, 1, 0, state=state, now=NOW + 500).replicas == 1
    assert run(policy, 1, 0, state=state, now=NOW + 580).replicas == 0


def test_stabilisation_window_delays_scale_in_but_not_scale_out() -> None:
    policy = replace(PLAIN, scale_down_stabilization_seconds=120.0)
    high = run(policy, 2, 80, now=NOW)
    assert high.replicas == 8  # out at once
    dip = run(policy, 8, 20, state=high.state, now=NOW + 60)
    assert dip.desired == 2
    assert dip.replicas == 8
    assert "120s" in dip.reason
    # The 8 was recommended at NOW; at NOW + 120 it has left the window, the 2 has not.
    later = run(policy, 8, 5, state=dip.state, now=NOW + 120)
    assert later.replicas == 2


def test_scale_in_stops_at_the_windows_highest_not_at_current() -> None:
    policy = replace(PLAIN, scale_down_stabilization_seconds=120.0)
    state = ScalingState(last_work_seen=NOW - 10, recommendations=((NOW - 100, 4),))
    assert run(policy, 9, 10, state=state).replicas == 4


def test_step_limits_pace_both_directions() -> None:
    policy = replace(PLAIN, scale_up_max_step=2, scale_down_max_step=3)
    up = run(policy, 1, 90)
    assert up.replicas == 3
    assert up.limited_reason is Limit.SCALE_UP_LIMIT
    down = run(policy, 9, 10)
    assert down.replicas == 6
    assert down.limited_reason is Limit.SCALE_DOWN_LIMIT


def test_step_limits_pace_the_way_to_zero() -> None:
    policy = replace(PLAIN, scale_down_max_step=2)
    steps = [5]
    while steps[-1] and len(steps) < 10:
        steps.append(run(policy, steps[-1], 0).replicas)
    assert steps == [5, 3, 1, 0]


def test_bounds_win_over_step_limits() -> None:
    policy = replace(PLAIN, min_replicas=3, max_replicas=6, scale_up_max_step=1)
    assert run(policy, 0, 0).replicas == 3
    policy = replace(PLAIN, max_replicas=6, scale_down_max_step=1)
    assert run(policy, 20, 100).replicas == 6


def test_failed_source_holds_replicas_and_keeps_the_cooldown_running() -> None:
    policy = replace(PLAIN, cooldown_seconds=300.0)
    before = ScalingState(last_work_seen=NOW)
    held = run(policy, 4, None, state=before, now=NOW + 250)
    assert held.held
    assert held.replicas == 4
    assert held.desired is None
    assert not held.active
    assert held.state.last_work_seen == NOW
    assert "failed" in held.reason
    # The queue was unseen at NOW + 250, so an empty read at NOW + 400 is not 300s of
    # quiet: the last replica stays until NOW + 550.
    assert run(policy, 1, 0, state=held.state, now=NOW + 400).replicas == 1
    assert run(policy, 1, 0, state=held.state, now=NOW + 550).replicas == 0


def test_failed_source_still_respects_bounds() -> None:
    decision = run(PLAIN, 15, None)
    assert decision.held
    assert decision.replicas == 10
    assert decision.limited_reason is Limit.TOO_MANY_REPLICAS


def test_first_decision_does_not_shed_a_running_deployment() -> None:
    # A new resource adopting 5 busy-looking pods reads an empty queue: the pods are
    # the first recommendation, and the cooldown starts now.
    policy = replace(PLAIN, cooldown_seconds=300.0, scale_down_stabilization_seconds=120.0)
    first = run(policy, 5, 0, state=ScalingState(), now=NOW)
    assert first.replicas == 5
    assert run(policy, 5, 0, state=first.state, now=NOW + 120).replicas == 1
    assert run(policy, 1, 0, state=first.state, now=NOW + 300).replicas == 0


# --- state persistence -------------------------------------------------------------------

times = st.floats(min_value=NOW - 10_000, max_value=NOW + 10_000)
states = st.builds(
    ScalingState,
    last_work_seen=st.none() | times,
    last_unknown=st.none() | times,
    recommendations=st.lists(st.tuples(times, st.integers(0, 200)), max_size=8).map(tuple),
)


@given(states)
def test_state_survives_a_json_round_trip(state: ScalingState) -> None:
    assert ScalingState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_state_reads_integer_times_and_missing_keys() -> None:
    assert ScalingState.from_dict({}) == ScalingState()
    read = ScalingState.from_dict({"lastWorkSeen": 100, "recommendations": [[90, 3]]})
    assert read == ScalingState(last_work_seen=100.0, recommendations=((90.0, 3),))


@pytest.mark.parametrize(
    ("status", "field"),
    [
        ({"lastWorkSeen": "yesterday"}, "lastWorkSeen"),
        ({"lastUnknown": True}, "lastUnknown"),
        ({"recommendations": {"a": 1}}, "recommendations"),
        ({"recommendations": [[1.0]]}, "recommendations"),
        ({"recommendations": [[1.0, -3]]}, "recommendations"),
        ({"recommendations": [[None, 3]]}, "recommendations"),
    ],
)
def test_state_rejects_a_tampered_status(status: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpecError, match=field):
        ScalingState.from_dict(status)


# --- properties ------------------------------------------------------------------------


@st.composite
def policies(
    draw: st.DrawFn, *, min_replicas: st.SearchStrategy[int] | None = None
) -> ScalingPolicy:
    low = draw(min_replicas if min_replicas is not None else st.integers(0, 5))
    return ScalingPolicy(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), low + 30)),
        target_per_replica=draw(st.integers(1, 50)),
        activation_backlog=draw(st.integers(0, 20)),
        cooldown_seconds=draw(st.floats(0, 3600)),
        scale_down_stabilization_seconds=draw(st.floats(0, 3600)),
        scale_up_max_step=draw(st.none() | st.integers(1, 10)),
        scale_down_max_step=draw(st.none() | st.integers(1, 10)),
    )


observations = st.builds(Observation, st.none() | st.integers(0, 3000), st.integers(0, 300))
seen = st.builds(Observation, st.integers(0, 3000), st.integers(0, 300))
replica_counts = st.integers(0, 60)
nows = st.floats(NOW, NOW + 5000)


@given(policies(), replica_counts, observations, states, nows)
def test_replicas_stay_within_bounds(
    policy: ScalingPolicy, current: int, observation: Observation, state: ScalingState, now: float
) -> None:
    decision = step(policy, current, observation, state, now)
    assert policy.min_replicas <= decision.replicas <= policy.max_replicas


@given(
    policies(),
    replica_counts,
    st.integers(0, 3000),
    st.integers(1, 3000),
    st.integers(0, 300),
    states,
    nows,
)
def test_more_backlog_never_means_fewer_replicas(
    policy: ScalingPolicy,
    current: int,
    backlog: int,
    extra: int,
    in_flight: int,
    state: ScalingState,
    now: float,
) -> None:
    def replicas(b: int) -> int:
        return step(policy, current, Observation(b, in_flight), state, now).replicas

    assert replicas(backlog + extra) >= replicas(backlog)


@given(policies(min_replicas=st.just(0)), seen, states, nows)
def test_from_zero_workers_start_only_above_activation(
    policy: ScalingPolicy, observation: Observation, state: ScalingState, now: float
) -> None:
    decision = step(policy, 0, observation, state, now)
    above = (observation.work or 0) > policy.activation_backlog
    assert (decision.replicas > 0) == above
    assert decision.active == above


@given(
    policies(min_replicas=st.just(0)),
    st.integers(1, 60),
    seen,
    times,
    st.floats(0, 1, exclude_max=True),
    st.none() | st.floats(0, 10_000),
)
def test_never_to_zero_before_the_cooldown(
    policy: ScalingPolicy,
    current: int,
    observation: Observation,
    last_work: float,
    fraction: float,
    unknown_before: float | None,
) -> None:
    now = last_work + fraction * policy.cooldown_seconds
    assume(now - last_work < policy.cooldown_seconds)
    state = ScalingState(
        last_work_seen=last_work,
        last_unknown=None if unknown_before is None else last_work - unknown_before,
    )
    decision = step(policy, current, observation, state, now)
    assert decision.replicas >= 1


@given(
    policies(min_replicas=st.just(0)),
    times,
    st.floats(0, 10_000),
    st.integers(0, 300),
)
def test_to_zero_once_the_cooldown_has_passed(
    policy: ScalingPolicy, last_work: float, past: float, window_peak: int
) -> None:
    now = last_work + policy.cooldown_seconds + past
    assume(now - last_work >= policy.cooldown_seconds)  # float rounding
    # Even a window full of high recommendations does not keep the last replica.
    state = ScalingState(last_work_seen=last_work, recommendations=((now - 1, window_peak),))
    decision = step(policy, 1, Observation(0), state, now)
    assert decision.replicas == 0


@given(policies(), replica_counts, observations, states, nows)
def test_step_limits_hold_except_to_reach_the_bounds(
    policy: ScalingPolicy, current: int, observation: Observation, state: ScalingState, now: float
) -> None:
    replicas = step(policy, current, observation, state, now).replicas
    up, down = policy.scale_up_max_step, policy.scale_down_max_step
    if up is not None and replicas > current + up:
        assert current < policy.min_replicas
        assert replicas == policy.min_replicas
    if down is not None and replicas < current - down:
        assert current > policy.max_replicas
        assert replicas == policy.max_replicas


@given(policies(), replica_counts, states, nows, st.floats(0, 1, exclude_max=True))
def test_a_failed_source_holds_and_remembers_no_work(
    policy: ScalingPolicy, current: int, state: ScalingState, now: float, fraction: float
) -> None:
    held = step(policy, current, Observation(None), state, now)
    assert held.held
    assert held.replicas == min(max(current, policy.min_replicas), policy.max_replicas)
    assert held.state.last_work_seen == state.last_work_seen
    # An empty read within a cooldown of the failure does not remove the last replica.
    later = now + fraction * policy.cooldown_seconds
    assume(later - now < policy.cooldown_seconds)
    after = step(policy, 1, Observation(0), held.state, later)
    assert after.replicas >= 1


@dataclass
class Tracker:
    """The test's own account of a timeline, kept from the spec, not from the module."""

    policy: ScalingPolicy
    recommendations: list[tuple[float, int]]
    last_work: float | None = None
    last_blind: float | None = None

    def window_peak(self, now: float) -> int:
        horizon = now - self.policy.scale_down_stabilization_seconds
        return max((r for t, r in self.recommendations if t > horizon), default=0)

    def quiet_for(self, now: float) -> float:
        anchors = [t for t in (self.last_work, self.last_blind) if t is not None]
        return now - max(anchors)


@given(
    policies(),
    replica_counts,
    st.lists(st.tuples(st.floats(1, 120), observations), min_size=1, max_size=40),
)
def test_timeline_invariants(
    policy: ScalingPolicy, start: int, steps: list[tuple[float, Observation]]
) -> None:
    now, current, state = NOW, start, ScalingState()
    seed = [(now, start)] if policy.scale_down_stabilization_seconds > 0 else []
    tracker = Tracker(policy, recommendations=seed, last_blind=now)
    for gap, observation in steps:
        decision = step(policy, current, observation, state, now)
        work = observation.work
        if work is None:
            tracker.last_blind = now
        else:
            assert decision.desired == math.ceil(work / policy.target_per_replica)
            tracker.recommendations.append((now, decision.desired))
            if work > 0:
                tracker.last_work = now
        going_to_zero = (
            policy.min_replicas == 0
            and work == 0
            and tracker.quiet_for(now) >= policy.cooldown_seconds
        )
        if decision.replicas == 0 and current > 0:
            assert going_to_zero
        if decision.replicas < current and not going_to_zero:
            floor = min(current, policy.max_replicas, tracker.window_peak(now))
            assert decision.replicas >= floor
        # Kept small: each kept recommendation is larger than every later one.
        kept = [r for _, r in decision.state.recommendations]
        assert kept == sorted(set(kept), reverse=True)
        current, state, now = decision.replicas, decision.state, now + gap


# --- a simulated queue -------------------------------------------------------------------

POLL = 15.0
#: Items one replica finishes between two polls, and holds claimed at a poll.
RATE, CONCURRENCY = 5, 4


@dataclass
class Tick:
    at: float
    backlog: int
    in_flight: int
    decision: Decision

    @property
    def work(self) -> int:
        return self.backlog + self.in_flight


def simulate(policy: ScalingPolicy, arrivals: dict[float, int], until: float) -> list[Tick]:
    """Poll every POLL seconds; replicas set at one poll work until the next."""
    ticks: list[Tick] = []
    queued, replicas, state, now = 0, 0, ScalingState(), NOW
    while now <= NOW + until:
        queued += arrivals.get(now - NOW, 0)
        claimed = min(queued, replicas * CONCURRENCY)
        decision = step(policy, replicas, Observation(queued - claimed, claimed), state, now)
        ticks.append(Tick(now - NOW, queued - claimed, claimed, decision))
        replicas, state = decision.replicas, decision.state
        queued -= min(queued, replicas * RATE)
        now += POLL
    return ticks


BURSTY = replace(
    PLAIN,
    max_replicas=20,
    activation_backlog=2,
    cooldown_seconds=300.0,
    scale_down_stabilization_seconds=120.0,
)


@pytest.mark.parametrize(("up", "down"), [(None, None), (4, 5)])
def test_burst_drain_idle(up: int | None, down: int | None) -> None:
    policy = replace(BURSTY, scale_up_max_step=up, scale_down_max_step=down)
    # Idle for a minute, a burst of 900, a trickle of 2 (not worth waking for) once the
    # fleet is asleep, then 5 more.
    ticks = simulate(policy, {60: 900, 900: 2, 960: 5}, until=1200)
    replicas = [t.decision.replicas for t in ticks]
    by_time = {t.at: t for t in ticks}

    assert all(r == 0 for t, r in zip(ticks, replicas, strict=True) if t.at < 60)
    assert by_time[60].decision.replicas == (20 if up is None else 4)
    assert max(replicas) == 20
    for before, after in itertools.pairwise(replicas):
        assert after - before <= (up or 20)
        assert before - after <= (down or 20)

    last_work = max(t.at for t in ticks if t.work > 0 and t.at < 900)
    asleep_at = min(t.at for t in ticks if t.at > 60 and t.decision.replicas == 0)
    # Asleep at the first poll a full cooldown after the last work was seen, not before.
    assert last_work + 300 <= asleep_at < last_work + 300 + POLL
    assert all(r >= 1 for t, r in zip(ticks, replicas, strict=True) if 60 <= t.at < asleep_at)
    # No scale-in while a higher recommendation is younger than the window.
    for prev, tick in itertools.pairwise(ticks):
        if 0 < tick.decision.replicas < prev.decision.replicas:
            peaks = [p.decision.desired or 0 for p in ticks if tick.at - 120 < p.at <= tick.at]
            assert tick.decision.replicas >= min(prev.decision.replicas, 20, max(peaks))

    assert by_time[900].decision.replicas == 0  # 2 waiting, activation 2
    assert not by_time[900].decision.active
    assert by_time[960].decision.replicas == 1  # 7 waiting wake one worker
    assert by_time[960].decision.active
