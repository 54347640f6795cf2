"""When an IntentWorker's status is written: on what a reader sees, never on the clock alone."""

from __future__ import annotations

from typing import Any

import pytest

from intent_fleet.operator.scaling import ScalingState
from intent_fleet.operator.status import needs_write

REFRESH = 30.0


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "observedGeneration": 2,
        "selector": "intentbus.io/worker=w",
        "replicas": 1,
        "readyReplicas": 1,
        "desiredReplicas": 1,
        "backlog": 3,
        "backlogObservedTime": "2026-12-02T00:00:00Z",
        "backlogReadSeconds": 0.002,
        "lastActiveTime": "2026-12-02T00:00:00Z",
        "lastScaleTime": "2026-12-01T23:00:00Z",
        "scaling": {"lastWorkSeen": 1000.0, "lastUnknown": 900.0, "recommendations": [[990.0, 1]]},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "DeploymentAvailable",
                "message": "1/1 replicas available",
                "lastTransitionTime": "2026-12-01T23:00:00Z",
                "observedGeneration": 2,
            }
        ],
    }
    return {**base, **changes}


def scaling(**changes: Any) -> dict[str, Any]:
    return {**status()["scaling"], **changes}


def test_nothing_written_yet_is_written() -> None:
    assert needs_write(None, status(), refresh_seconds=REFRESH)
    assert needs_write({}, status(), refresh_seconds=REFRESH)


def test_the_same_status_with_new_poll_times_is_not_written() -> None:
    later = status(
        backlogObservedTime="2026-12-02T00:00:07Z",
        backlogReadSeconds=0.004,
        lastActiveTime="2026-12-02T00:00:07Z",
        scaling=scaling(lastWorkSeen=1007.0, recommendations=[[1007.0, 1]]),
    )
    assert not needs_write(status(), later, refresh_seconds=REFRESH)


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 2},
        {"readyReplicas": 0},
        {"desiredReplicas": 2},
        {"backlog": 4},
        {"backlog": None},
        {"observedGeneration": 3},
        {"lastScaleTime": "2026-12-02T00:00:00Z"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_change_a_reader_sees_is_written(change: dict[str, Any]) -> None:
    assert needs_write(status(), status(**change), refresh_seconds=REFRESH)


def test_a_condition_changing_status_reason_or_message_is_written() -> None:
    (ready,) = status()["conditions"]
    for field, value in (("status", "False"), ("reason", "Progressing"), ("message", "0/1")):
        assert needs_write(
            status(), status(conditions=[{**ready, field: value}]), refresh_seconds=REFRESH
        ), field
    # Only its transition time: the same condition.
    moved = {**ready, "lastTransitionTime": "2026-12-02T01:00:00Z"}
    assert not needs_write(status(), status(conditions=[moved]), refresh_seconds=REFRESH)


def test_the_autoscalers_memory_is_written_once_it_is_refresh_seconds_behind() -> None:
    behind = status(scaling=scaling(lastWorkSeen=1000.0 + REFRESH))
    assert needs_write(status(), behind, refresh_seconds=REFRESH)
    assert not needs_write(
        status(),
        status(scaling=scaling(lastWorkSeen=1000.0 + REFRESH - 1)),
        refresh_seconds=REFRESH,
    )
    assert needs_write(status(), status(scaling=scaling(lastUnknown=None)), refresh_seconds=REFRESH)
    # Zero: every change of memory is written (the flag's "always").
    assert needs_write(status(), status(scaling=scaling(lastWorkSeen=1000.5)), refresh_seconds=0)


def test_only_recommendations_that_hold_replicas_up_count() -> None:
    # desired 1: a recommendation of 1 (or 0) holds nothing up, whatever its time.
    noise = status(scaling=scaling(recommendations=[[5000.0, 1], [5000.0, 0]]))
    assert not needs_write(status(), noise, refresh_seconds=REFRESH)
    # A 3 held within the window keeps 3 replicas although 1 is wanted: that is news...
    holding = status(scaling=scaling(recommendations=[[995.0, 3], [1000.0, 1]]))
    assert needs_write(status(), holding, refresh_seconds=REFRESH)
    # ...and so is its time moving by the refresh interval, but not by less.
    for moved, written in ((995.0 + REFRESH, True), (995.0 + REFRESH - 1, False)):
        later = status(scaling=scaling(recommendations=[[moved, 3], [1001.0, 1]]))
        assert needs_write(holding, later, refresh_seconds=REFRESH) is written


@pytest.mark.parametrize("junk", ["yesterday", [1000.0], True, float("nan")])
def test_an_unreadable_time_in_the_memory_is_replaced(junk: Any) -> None:
    edited = status(scaling=scaling(lastWorkSeen=junk))
    assert needs_write(edited, status(), refresh_seconds=REFRESH)


@pytest.mark.parametrize(
    "junk", [["x"], [[1.0]], [["t", 3]], [[1.0, True]], "all", None, [[float("nan"), 3]]]
)
def test_unreadable_recommendations_hold_nothing_up(junk: Any) -> None:
    edited = status(scaling=scaling(recommendations=junk))
    assert not needs_write(edited, status(), refresh_seconds=REFRESH)
    holding = status(scaling=scaling(recommendations=[[995.0, 3]]))
    assert needs_write(edited, holding, refresh_seconds=REFRESH)


def test_a_restarted_operator_reads_the_memory_as_late_as_it_may_be() -> None:
    state = ScalingState(last_work_seen=1000.0, last_unknown=900.0, recommendations=((990.0, 3),))
    later = state.later_by(REFRESH)
    assert later.last_work_seen == 1000.0 + REFRESH
    assert later.last_unknown == 900.0 + REFRESH
    assert later.recommendations == ((990.0 + REFRESH, 3),)
    assert ScalingState().later_by(REFRESH) == ScalingState()
