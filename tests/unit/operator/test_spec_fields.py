"""An IntentWorker's fields are read by the protocol's field readers: a hostile value is an
InvalidSpecError naming the field's path, an absent or null one takes the default."""

from __future__ import annotations

from typing import Any

import pytest

from intent_fleet.operator.errors import InvalidSpecError
from intent_fleet.operator.spec import parse_worker
from tests.unit.operator.test_render import worker_body


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"scaling": {"maxReplicas": True}},
            "spec.scaling.maxReplicas must be an integer, not a boolean",
        ),
        ({"scaling": {"minReplicas": 1.5}}, "spec.scaling.minReplicas must be an integer, not 1.5"),
        (
            {"scaling": {"scaleUp": {"maxStep": "2"}}},
            "spec.scaling.scaleUp.maxStep must be an integer, not a string",
        ),
        ({"scaling": []}, "spec.scaling must be an object, not an array"),
        ({"handler": {"port": float("inf")}}, "spec.handler.port must be an integer, not inf"),
        ({"handler": {"path": 5}}, "spec.handler.path must be a string, not a number"),
        ({"goal": "g" * 257}, "spec.goal must be at most 256 characters, got 257"),
        ({"goal": None}, "spec.goal is required"),
        (
            {"bus": {"url": "http://bus", "credentialsSecretRef": {}}},
            "spec.bus.credentialsSecretRef.name is required",
        ),
    ],
)
def test_a_hostile_field_is_refused_by_its_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_worker(worker_body(**spec))
    assert str(caught.value) == message


def test_a_body_that_is_no_object_is_refused_by_name() -> None:
    with pytest.raises(InvalidSpecError, match=r"^metadata must be an object, not a string$"):
        parse_worker({**worker_body(), "metadata": "resize"})


def test_null_fields_take_their_defaults_and_integral_floats_are_integers() -> None:
    worker = parse_worker(
        worker_body(handler={"port": None, "concurrency": 4.0}, scaling={"maxReplicas": 20.0})
    )
    assert (worker.handler.port, worker.handler.concurrency) == (8080, 4)
    assert worker.policy.max_replicas == 20
