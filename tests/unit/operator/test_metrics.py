"""The operator's metrics: what OperatorMetrics renders, and what the controller records."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from intent_fleet.operator.backlog.exposition import parse_exposition
from intent_fleet.operator.controller import Controller
from intent_fleet.operator.errors import BacklogUnavailableError, InvalidSpecError
from intent_fleet.operator.kube import DEPLOYMENTS, KubeApiError, KubeNotFoundError, Resource
from intent_fleet.operator.metrics import OperatorMetrics, error_reason
from intent_fleet.operator.scaling import Observation
from intent_fleet.operator.spec import WorkerSpec, parse_worker
from tests.unit.operator.test_render import worker_body

SCALING = {"minReplicas": 0, "maxReplicas": 5, "targetPerReplica": 10}
SERIES = 'name="resize",namespace="media"'


def worker(**spec: Any) -> WorkerSpec:
    return parse_worker(worker_body(**spec))


def scraped(metrics: OperatorMetrics) -> dict[str, float]:
    """Every sample of a scrape, keyed ``name{a="1",b="2"}`` (labels sorted)."""
    found = {}
    for sample in parse_exposition(metrics.render().decode()).samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def assert_samples(found: dict[str, float], *expected: str) -> None:
    """Each ``'name{labels} value'`` of ``expected`` is in the scrape with that value."""
    for line in expected:
        key, value = line.rsplit(" ", 1)
        assert found.get(key) == float(value), (line, found.get(key))


def test_worker_series_are_rendered_and_removed_with_the_worker() -> None:
    metrics = OperatorMetrics()
    resize = worker()
    other_body = worker_body()
    other_body["metadata"].update(name="other", uid="u-2")
    other = parse_worker(other_body)
    metrics.backlog_read(resize, seconds=0.02, observation=Observation(backlog=25, in_flight=4))
    metrics.worker_status(resize, replicas=2, ready=1, desired=3)
    metrics.worker_status(other, replicas=0, ready=0, desired=None)
    text = metrics.render().decode()
    assert_samples(
        scraped(metrics),
        f"intent_fleet_operator_worker_backlog{{{SERIES}}} 25",
        f"intent_fleet_operator_worker_in_flight{{{SERIES}}} 4",
        f"intent_fleet_operator_worker_desired_replicas{{{SERIES}}} 3",
        f"intent_fleet_operator_worker_replicas{{{SERIES}}} 2",
        f"intent_fleet_operator_worker_ready_replicas{{{SERIES}}} 1",
        'intent_fleet_operator_worker_replicas{name="other",namespace="media"} 0',
        'intent_fleet_operator_backlog_read_seconds_bucket{le="0.025",source="busStats"} 1',
        'intent_fleet_operator_backlog_read_seconds_count{source="busStats"} 1',
        "intent_fleet_operator_leader 0",
    )
    assert "# TYPE intent_fleet_operator_worker_backlog gauge" in text
    assert "# TYPE intent_fleet_operator_backlog_read_seconds histogram" in text
    # No desired replicas were decided for "other": no series is made up for it.
    assert 'desired_replicas{name="other",namespace="media"}' not in text

    metrics.forget(resize.uid)
    metrics.forget("never-seen")
    assert 'name="resize"' not in metrics.render().decode()
    # The process-wide series stay.
    assert_samples(
        scraped(metrics),
        'intent_fleet_operator_worker_replicas{name="other",namespace="media"} 0',
        'intent_fleet_operator_backlog_read_seconds_count{source="busStats"} 1',
    )


def test_a_failed_read_is_timed_and_counted_and_keeps_the_last_backlog() -> None:
    metrics = OperatorMetrics()
    resize = worker()
    metrics.backlog_read(resize, seconds=0.01, observation=Observation(backlog=7))
    metrics.backlog_read(resize, seconds=5.0, observation=Observation(backlog=None))
    backlog = "intent_fleet_operator_worker_backlog"
    assert metrics.value(backlog, namespace="media", name="resize") == 7
    failures = "intent_fleet_operator_backlog_read_failures_total"
    assert metrics.value(failures, source="busStats") == 1
    assert metrics.value("intent_fleet_operator_backlog_read_seconds_count", source="busStats") == 2


def test_an_unknown_source_type_does_not_mint_a_label_value() -> None:
    metrics = OperatorMetrics()
    odd = worker(backlogSource={"type": "anything-a-user-typed"})
    metrics.backlog_read(odd, seconds=0.01, observation=Observation(backlog=None))
    failures = {
        key: value
        for key, value in scraped(metrics).items()
        if key.startswith("intent_fleet_operator_backlog_read_failures_total")
    }
    assert failures == {'intent_fleet_operator_backlog_read_failures_total{source="other"}': 1}


def test_reconcile_outcomes_scale_events_and_leadership() -> None:
    metrics = OperatorMetrics()
    with metrics.reconciling():
        pass
    for error in (KubeApiError("boom", 500), InvalidSpecError("bad"), RuntimeError("x")):
        with pytest.raises(type(error)), metrics.reconciling():
            raise error
    w = worker()
    metrics.scaled(w, 0, 3)
    metrics.scaled(w, 3, 1)
    metrics.scaled(w, 2, 2)
    metrics.set_leader(True)
    assert_samples(
        scraped(metrics),
        'intent_fleet_operator_reconcile_total{result="ok"} 1',
        'intent_fleet_operator_reconcile_total{result="error"} 3',
        'intent_fleet_operator_reconcile_errors_total{reason="KubeApi"} 1',
        'intent_fleet_operator_reconcile_errors_total{reason="InvalidSpec"} 1',
        'intent_fleet_operator_reconcile_errors_total{reason="Other"} 1',
        'intent_fleet_operator_scale_events_total{direction="up"} 1',
        'intent_fleet_operator_scale_events_total{direction="down"} 1',
        "intent_fleet_operator_leader 1",
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (InvalidSpecError("x"), "InvalidSpec"),
        (KubeNotFoundError("x", 404), "KubeApi"),
        (TimeoutError(), "Timeout"),
        (ConnectionResetError(), "Network"),
        (ValueError("x"), "Other"),
    ],
)
def test_error_reasons_are_a_small_fixed_set(error: Exception, reason: str) -> None:
    assert error_reason(error) == reason


# --- the controller records as it goes ------------------------------------------------------


class FakeKube:
    """The four calls the controller makes, against dicts; ``gone`` makes the worker vanish."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.gone = False
        self.fail_apply = False
        self.status_patches: list[Mapping[str, Any]] = []

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        assert resource is DEPLOYMENTS
        if name not in self.deployments:
            raise KubeNotFoundError("no deployment", 404)
        return copy.deepcopy(self.deployments[name])

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if self.fail_apply:
            raise KubeApiError("apply refused", 500)
        applied = {**copy.deepcopy(dict(obj)), "status": {"replicas": 1, "readyReplicas": 1}}
        applied["metadata"]["generation"] = 1
        self.deployments[obj["metadata"]["name"]] = applied
        return applied

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str = "",
    ) -> None:
        if subresource == "status":
            if self.gone:
                raise KubeNotFoundError("gone", 404)
            self.status_patches.append(patch)

    async def list(self, resource: Resource, namespace: str, selector: str) -> list[Any]:
        return []


def controller(kube: FakeKube, backlog: int | None) -> Controller:
    async def read(_worker: WorkerSpec) -> Observation:
        if backlog is None:
            raise BacklogUnavailableError("the source is down")
        return Observation(backlog=backlog, in_flight=0)

    async def anything_goes(_worker: WorkerSpec) -> None:
        return None

    return Controller(
        api=kube,  # type: ignore[arg-type]
        read_backlog=read,
        post_event=lambda *_: None,
        check_credentials=anything_goes,
        clock=lambda: 1_700_000_000.0,
    )


async def test_a_tick_records_backlog_replicas_and_a_scale_event_then_forget_drops_them() -> None:
    kube = FakeKube()
    ctl = controller(kube, backlog=25)
    body = worker_body(scaling=SCALING)
    await ctl.tick(body)
    assert_samples(
        scraped(ctl.metrics),
        f"intent_fleet_operator_worker_backlog{{{SERIES}}} 25",
        f"intent_fleet_operator_worker_desired_replicas{{{SERIES}}} 3",
        f"intent_fleet_operator_worker_replicas{{{SERIES}}} 1",
        'intent_fleet_operator_scale_events_total{direction="up"} 1',
        'intent_fleet_operator_reconcile_total{result="ok"} 1',
        'intent_fleet_operator_backlog_read_seconds_count{source="busStats"} 1',
    )

    ctl.forget("u-1")
    assert 'name="resize"' not in ctl.metrics.render().decode()


async def test_a_dead_source_and_a_failed_apply_are_counted() -> None:
    kube = FakeKube()
    ctl = controller(kube, backlog=None)
    await ctl.tick(worker_body(scaling=SCALING))
    failures = "intent_fleet_operator_backlog_read_failures_total"
    assert ctl.metrics.value(failures, source="busStats") == 1
    kube.fail_apply = True
    with pytest.raises(KubeApiError):
        await ctl.reconcile(worker_body(scaling=SCALING))
    assert ctl.metrics.value("intent_fleet_operator_reconcile_total", result="error") == 1
    errors = "intent_fleet_operator_reconcile_errors_total"
    assert ctl.metrics.value(errors, reason="KubeApi") == 1


async def test_a_pass_that_finds_the_worker_deleted_leaves_no_series() -> None:
    kube = FakeKube()
    ctl = controller(kube, backlog=25)
    kube.gone = True
    await ctl.tick(worker_body(scaling=SCALING))
    assert 'name="resize"' not in ctl.metrics.render().decode()


def test_the_fleet_view_keeps_what_the_page_shows_and_forgets_deleted_workers() -> None:
    now = [1000.0]
    metrics = OperatorMetrics(clock=lambda: now[0])
    w = worker()
    for backlog, replicas in ((0, 0), (40, 0), (40, 2), (0, 2)):
        metrics.backlog_read(w, seconds=0.01, observation=Observation(backlog, in_flight=1))
        metrics.worker_status(
            w,
            replicas=replicas,
            ready=replicas,
            desired=replicas,
            conditions=[{"type": "Ready", "status": "True"}],
        )
        now[0] += 1
    metrics.scaled(w, 0, 2, reason="backlog 40 wants 2")
    metrics.backlog_read(w, seconds=0.01, observation=Observation(None))  # a failed read
    now[0] += 2000  # older points fall out of the chart's window
    metrics.worker_status(w, replicas=2, ready=1, desired=2)
    [seen] = metrics.fleet.snapshot()["workers"]
    assert (seen["namespace"], seen["name"], seen["goal"]) == (w.namespace, w.name, w.goal)
    assert (seen["backlog"], seen["in_flight"], seen["replicas"], seen["ready"]) == (0, 1, 2, 1)
    assert seen["points"] == [[3004.0, 0, 2]]
    assert seen["events"] == [{"time": 1004.0, "from": 0, "to": 2, "reason": "backlog 40 wants 2"}]
    metrics.forget(w.uid)
    assert metrics.fleet.snapshot()["workers"] == []
