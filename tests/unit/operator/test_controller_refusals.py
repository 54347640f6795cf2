"""A refused worker gets a condition and one event, and nothing is applied for it."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from intent_fleet.operator.controller import REFUSED_RETRY_SECONDS, Controller
from intent_fleet.operator.errors import NotPermittedError
from intent_fleet.operator.scaling import Observation
from intent_fleet.operator.spec import WorkerSpec
from tests.unit.operator.test_metrics import SCALING, FakeKube
from tests.unit.operator.test_render import worker_body

Event = tuple[str, str, str]


def controller(
    kube: FakeKube, events: list[Event], *, permitted: bool = True
) -> tuple[Controller, list[WorkerSpec]]:
    read: list[WorkerSpec] = []

    async def backlog(worker: WorkerSpec) -> Observation:
        read.append(worker)
        return Observation(backlog=25, in_flight=0)

    async def check(worker: WorkerSpec) -> None:
        if not permitted:
            raise NotPermittedError(f"Secret {worker.bus.secret_name!r} has not opted in")

    def post(_body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        events.append((kind, reason, message))

    ctl = Controller(
        api=kube,  # type: ignore[arg-type]
        read_backlog=backlog,
        post_event=post,
        check_credentials=check,
        clock=lambda: 1_700_000_000.0,
    )
    return ctl, read


def with_status(body: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The body as the next watch event brings it, after our status patch."""
    updated = copy.deepcopy(body)
    updated["status"] = copy.deepcopy(dict(patch["status"]))
    return updated


async def test_a_deployment_someone_else_owns_is_left_alone() -> None:
    kube = FakeKube()
    theirs = {"metadata": {"name": "resize", "namespace": "media"}, "spec": {"replicas": 7}}
    kube.deployments["resize"] = copy.deepcopy(theirs)
    events: list[Event] = []
    ctl, read = controller(kube, events)
    body = worker_body(scaling=SCALING)

    assert (await ctl.tick(body)).interval == REFUSED_RETRY_SECONDS
    await ctl.reconcile(body)

    assert kube.deployments["resize"] == theirs  # never applied over
    assert read == []  # nor was the backlog read for it (no key sent anywhere)
    ready = kube.status_patches[0]["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == (
        "Ready",
        "False",
        "DeploymentNotOwned",
    )
    assert "not controlled by this IntentWorker" in ready["message"]
    assert [e[:2] for e in events] == [("Warning", "DeploymentNotOwned")]
    # Reported once: the next passes see the condition in the body and stay quiet.
    later = with_status(body, kube.status_patches[0])
    await ctl.tick(later)
    await ctl.reconcile(later)
    assert len(events) == 1
    assert len(kube.status_patches) == 1


async def test_an_owner_reference_of_another_uid_is_not_ours_either() -> None:
    kube = FakeKube()
    owner = {"uid": "someone-else", "controller": True, "kind": "IntentWorker", "name": "resize"}
    kube.deployments["resize"] = {
        "metadata": {"name": "resize", "namespace": "media", "ownerReferences": [owner]},
        "spec": {"replicas": 1},
    }
    events: list[Event] = []
    ctl, _ = controller(kube, events)
    await ctl.reconcile(worker_body(scaling=SCALING))
    assert [e[1] for e in events] == ["DeploymentNotOwned"]


async def test_a_credential_that_has_not_opted_in_stops_everything() -> None:
    kube = FakeKube()
    events: list[Event] = []
    ctl, read = controller(kube, events, permitted=False)
    await ctl.reconcile(worker_body(scaling=SCALING))
    await ctl.tick(worker_body(scaling=SCALING))
    assert kube.deployments == {}
    assert read == []
    assert [e[1] for e in events] == ["CredentialsNotPermitted"]
    assert (
        ctl.metrics.value(
            "intent_fleet_operator_reconcile_errors_total", reason="CredentialsNotPermitted"
        )
        == 2
    )


async def test_a_pod_the_guardrails_refuse_is_reported_with_its_field() -> None:
    kube = FakeKube()
    events: list[Event] = []
    ctl, _ = controller(kube, events)
    body = worker_body(scaling=SCALING)
    body["spec"]["template"]["spec"]["hostNetwork"] = True
    await ctl.reconcile(body)
    assert kube.deployments == {}
    (kind, reason, message) = events[0]
    assert (kind, reason) == ("Warning", "PodNotAllowed")
    assert "spec.template.spec.hostNetwork must not be true" in message


async def test_once_fixed_the_worker_is_applied_and_ready_again() -> None:
    kube = FakeKube()
    events: list[Event] = []
    ctl, _ = controller(kube, events)
    body = worker_body(scaling=SCALING)
    body["spec"]["template"]["spec"]["hostPID"] = True
    await ctl.reconcile(body)
    fixed = with_status(worker_body(scaling=SCALING), kube.status_patches[-1])
    await ctl.tick(fixed)
    assert kube.deployments["resize"]["spec"]["replicas"] == 3
    ready = kube.status_patches[-1]["status"]["conditions"][0]
    assert ready["type"] == "Ready"
    assert ready["reason"] != "PodNotAllowed"
