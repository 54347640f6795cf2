"""The IntentWorker CRD on a real API server: defaults, validation, subresources, printer columns.

Everything here is the API server's own behaviour for crds/intentworkers.intentbus.io.yaml; no
operator runs, so status is written by hand through /status, as the operator would.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from intent_fleet.operator.spec import parse_worker
from tests.support.cluster import REPO, Cluster

CRD_PATH = REPO / "crds" / "intentworkers.intentbus.io.yaml"
CRD_NAME = "intentworkers.intentbus.io"
API = "/apis/intentbus.io/v1alpha1"


def minimal(name: str, namespace: str) -> dict[str, Any]:
    """The least a user writes: a goal, where the bus is, its key, and one container."""
    return {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "goal": "images.resize",
            "bus": {"url": "http://intent-bus.bus:8080", "credentialsSecretRef": {"name": "k"}},
            "template": {"spec": {"containers": [{"name": "handler", "image": "resize:1"}]}},
        },
    }


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in (JSON merge patch rules: None deletes a key)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def worker(name: str, namespace: str, **changes: Any) -> dict[str, Any]:
    return merged(minimal(name, namespace), changes)


def crd_document() -> dict[str, Any]:
    with CRD_PATH.open() as stream:
        return yaml.safe_load(stream)


def validation_rules(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every CEL rule in ``schema``, however deeply nested."""
    found = list(schema.get("x-kubernetes-validations", []))
    for child in schema.get("properties", {}).values():
        found += validation_rules(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += validation_rules(schema[key])
    return found


def refusal(cluster: Cluster, body: dict[str, Any]) -> str:
    """The API server's answer to creating ``body``, which it must refuse (and not store)."""
    done = cluster.kubectl("create", "-f", "-", stdin=json.dumps(body), check=False)
    assert done.returncode != 0, f"the API server accepted {json.dumps(body['spec'])}"
    meta = body["metadata"]
    assert cluster.get("intentworker", meta["name"], "-n", meta["namespace"]) is None
    return done.stderr


def patch(
    cluster: Cluster, name: str, namespace: str, body: dict[str, Any], *, status: bool = False
) -> subprocess.CompletedProcess[str]:
    args = ["patch", f"intentworker/{name}", "-n", namespace, "--type=merge"]
    args += ["-p", json.dumps(body)]
    if status:
        args.append("--subresource=status")
    return cluster.kubectl(*args, check=False)


def stored(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    found = cluster.get("intentworker", name, "-n", namespace)
    assert found is not None, f"intentworker {namespace}/{name} is missing"
    return found


def scale_of(cluster: Cluster, name: str, namespace: str) -> subprocess.CompletedProcess[str]:
    path = f"{API}/namespaces/{namespace}/intentworkers/{name}/scale"
    return cluster.kubectl("get", "--raw", path, check=False)


@pytest.fixture(scope="module")
def crd(control_plane: Cluster) -> Cluster:
    control_plane.kubectl("apply", "-f", str(CRD_PATH))
    control_plane.wait_established(CRD_NAME)
    return control_plane


@pytest.fixture(scope="module")
def scratch(crd: Cluster) -> Iterator[str]:
    """One namespace for the requests the API server refuses (nothing is ever stored there)."""
    name = crd.namespace("crd")
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_the_crd_is_established_with_its_names(crd: Cluster, namespace: str) -> None:
    found = crd.get("crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert conditions.get("NonStructuralSchema") is None
    names = found["status"]["acceptedNames"]
    assert names["kind"] == "IntentWorker"
    assert names["shortNames"] == ["iw"]
    assert names["categories"] == ["intentbus"]
    assert found["spec"]["scope"] == "Namespaced"

    crd.apply(worker("named", namespace))
    for resource in ("iw", "intentworkers", "intentworker.intentbus.io", "intentbus"):
        listed = crd.get(resource, "-n", namespace)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["named"], resource


def test_a_minimal_worker_gets_every_default(crd: Cluster, namespace: str) -> None:
    crd.apply(worker("minimal", namespace))
    assert stored(crd, "minimal", namespace)["spec"] == {
        "goal": "images.resize",
        "bus": {
            "url": "http://intent-bus.bus:8080",
            "namespace": "default",
            "credentialsSecretRef": {"name": "k", "key": "api-key"},
            "protocol": "auto",
        },
        "handler": {"port": 8080, "path": "/", "timeoutSeconds": 300, "concurrency": 1},
        "template": {"spec": {"containers": [{"name": "handler", "image": "resize:1"}]}},
        "sidecar": {"logLevel": "info"},
        "scaling": {
            "minReplicas": 0,
            "maxReplicas": 10,
            "targetPerReplica": 10,
            "activationBacklog": 0,
            "pollingIntervalSeconds": 5,
            "cooldownSeconds": 300,
            "scaleUp": {},
            "scaleDown": {"stabilizationWindowSeconds": 60},
        },
        "backlogSource": {"type": "busStats"},
        "paused": False,
    }


def test_the_bus_url_may_be_left_to_the_operators_default(crd: Cluster, namespace: str) -> None:
    # The chart's operator runs with --default-bus-url; without one the operator refuses the
    # worker by name (unit tests), but the API server stores it either way.
    crd.apply(worker("no-url", namespace, spec={"bus": {"url": None}}))
    stored = crd.get("intentworker", "no-url", "-n", namespace)
    assert "url" not in stored["spec"]["bus"]
    assert stored["spec"]["bus"]["credentialsSecretRef"]["name"] == "k"


def test_defaults_fill_in_around_what_the_user_wrote(crd: Cluster, namespace: str) -> None:
    crd.apply(
        worker(
            "partial",
            namespace,
            spec={
                "handler": {"port": 3000},
                "scaling": {"maxReplicas": 3, "scaleDown": {"maxStep": 1}},
                "backlogSource": {
                    "type": "prometheus",
                    "prometheus": {"url": "http://bus:8080/metrics", "metric": "intents_ready"},
                },
            },
        )
    )
    spec = stored(crd, "partial", namespace)["spec"]
    assert spec["handler"] == {"port": 3000, "path": "/", "timeoutSeconds": 300, "concurrency": 1}
    assert spec["scaling"]["maxReplicas"] == 3
    assert spec["scaling"]["minReplicas"] == 0
    assert spec["scaling"]["scaleDown"] == {"maxStep": 1, "stabilizationWindowSeconds": 60}
    assert spec["backlogSource"]["type"] == "prometheus"


def test_the_operator_defaults_agree_with_the_schema(crd: Cluster, namespace: str) -> None:
    """The operator's fallbacks (for fields a client left out) match the CRD's defaults."""
    crd.apply(worker("agree", namespace))
    found = stored(crd, "agree", namespace)
    from_server = parse_worker(found)
    as_written = parse_worker({**worker("agree", namespace), "metadata": found["metadata"]})
    assert from_server == as_written


def test_the_pod_template_is_kept_as_written(crd: Cluster, namespace: str) -> None:
    template = {
        "metadata": {"labels": {"team": "media"}, "annotations": {"note": "kept"}},
        "spec": {
            "containers": [
                {
                    "name": "handler",
                    "image": "resize:1",
                    "env": [{"name": "MODE", "value": "fast"}],
                    "resources": {"limits": {"memory": "1Gi"}},
                },
                {"name": "helper", "image": "helper:2", "args": ["--quiet"]},
            ],
            "nodeSelector": {"disk": "ssd"},
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    crd.apply(worker("template", namespace, spec={"template": template}))
    assert stored(crd, "template", namespace)["spec"]["template"] == template


# One bad resource per CEL rule of the CRD: (changes, the field named, the API server's message).
CEL_CASES: list[tuple[dict[str, Any], str, str]] = [
    (
        {"spec": {"scaling": {"minReplicas": 5, "maxReplicas": 2}}},
        "spec.scaling.minReplicas",
        "scaling.minReplicas (5) must not exceed scaling.maxReplicas (2)",
    ),
    (
        {"spec": {"backlogSource": {"type": "sidecars"}}},
        "spec.scaling.minReplicas",
        "backlogSource.type 'sidecars' reads the backlog from running sidecars and cannot wake "
        "a worker from zero: set scaling.minReplicas to 1 or more",
    ),
    (
        {"spec": {"backlogSource": {"type": "prometheus"}}},
        "spec.backlogSource.prometheus: Required value",
        "backlogSource.prometheus is required when backlogSource.type is prometheus",
    ),
    (
        {"spec": {"backlogSource": {"prometheus": {"url": "http://p/metrics", "metric": "m"}}}},
        "spec.backlogSource.prometheus: Forbidden",
        "backlogSource.prometheus may only be set when backlogSource.type is prometheus",
    ),
    (
        {"spec": {"replicas": 12}},
        "spec.replicas",
        "replicas (manual mode) is 12 but scaling.maxReplicas, the most pods this worker may "
        "ever run, is 10: raise scaling.maxReplicas first",
    ),
    (
        {"spec": {"handler": {"port": 9090}}},
        "spec.handler.port",
        "handler.port must not be 8787 or 9090: the sidecar listens there (local API, ops "
        "listener) in the same pod",
    ),
    (
        {"spec": {"goal": " \u00a0\u2003 "}},  # blank to the bus too (str.strip)
        "spec.goal",
        "goal must not be blank",
    ),
    (
        {"spec": {"bus": {"url": "ftp://intent-bus.bus"}}},
        "spec.bus.url",
        "bus.url must be an absolute http:// or https:// URL with a host",
    ),
    (
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "intent-sidecar", "image": "x:1"}]}}
            }
        },
        "spec.template.spec.containers",
        "container name 'intent-sidecar' is reserved for the sidecar the operator adds",
    ),
    (
        {
            "spec": {
                "backlogSource": {
                    "type": "prometheus",
                    "prometheus": {"url": "/metrics", "metric": "intents_ready"},
                }
            }
        },
        "spec.backlogSource.prometheus.url",
        "backlogSource.prometheus.url must be an absolute http:// or https:// URL with a host",
    ),
    (
        {
            "spec": {
                "backlogSource": {
                    "type": "prometheus",
                    "prometheus": {
                        "url": "http://bus:8080/metrics",
                        "metric": "intents_ready",
                        "labels": {"goal-name": "resize"},
                    },
                }
            }
        },
        "spec.backlogSource.prometheus.labels",
        "backlogSource.prometheus.labels keys must be Prometheus label names "
        "([a-zA-Z_][a-zA-Z0-9_]*)",
    ),
    *[
        (
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "h", "image": "h:1"}], field: True}
                    }
                }
            },
            f"spec.template.spec.{field}",
            "hostNetwork, hostPID, hostIPC and shareProcessNamespace are refused: the sidecar's "
            "local API signs with the bus key",
        )
        for field in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace")
    ],
    (
        {"metadata": {"name": "w" * 64}},
        "metadata.name",
        "metadata.name must be at most 63 characters: it is the worker Deployment's name and a "
        "label value on its pods",
    ),
]


@pytest.mark.parametrize(("changes", "field", "message"), CEL_CASES)
def test_each_cel_rule_refuses_with_its_own_message(
    crd: Cluster, scratch: str, changes: dict[str, Any], field: str, message: str
) -> None:
    answer = refusal(crd, worker("bad", scratch, **changes))
    assert field in answer
    assert message in answer
    # One rule broken, one complaint: the API server lists several as "* ..." lines.
    assert "\n* " not in answer, answer


def test_every_cel_rule_has_a_refusal_case() -> None:
    """A rule added to the CRD without a case above fails here (the goal's: further down)."""
    schema = crd_document()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = validation_rules(schema)
    assert len(rules) == len(CEL_CASES) + 1
    tested = {message for _, _, message in CEL_CASES} | {GOAL_IMMUTABLE}
    # A rule with a messageExpression answers with that; the others with their message.
    fixed = [" ".join(r["message"].split()) for r in rules if "messageExpression" not in r]
    assert [m for m in fixed if m not in tested] == []


# Bad types, enums and ranges: (changes, what the API server's answer must contain).
SCHEMA_CASES: list[tuple[dict[str, Any], str]] = [
    ({"spec": {"goal": None}}, "spec.goal: Required value"),
    ({"spec": {"goal": "resize\nnow"}}, "spec.goal in body should match"),
    ({"spec": {"goal": "g" * 257}}, "spec.goal: Too long"),
    ({"spec": {"bus": {"credentialsSecretRef": None}}}, "spec.bus.credentialsSecretRef: Required"),
    ({"spec": {"bus": {"namespace": "team a"}}}, "spec.bus.namespace in body should match"),
    ({"spec": {"bus": {"protocol": "v3"}}}, 'spec.bus.protocol: Unsupported value: "v3"'),
    ({"spec": {"bus": {"capabilities": ["gpu", "gpu"]}}}, "spec.bus.capabilities[1]: Duplicate"),
    ({"spec": {"bus": {"capabilities": ["gpu,ssd"]}}}, "spec.bus.capabilities[0] in body should"),
    ({"spec": {"handler": {"port": 0}}}, "spec.handler.port in body should be greater than"),
    ({"spec": {"handler": {"port": 65536}}}, "spec.handler.port in body should be less than"),
    ({"spec": {"handler": {"port": "8080"}}}, "spec.handler.port in body must be of type integer"),
    ({"spec": {"handler": {"path": "run"}}}, "spec.handler.path in body should match"),
    ({"spec": {"handler": {"timeoutSeconds": 0}}}, "spec.handler.timeoutSeconds in body should"),
    ({"spec": {"handler": {"timeoutSeconds": 86401}}}, "spec.handler.timeoutSeconds in body"),
    ({"spec": {"handler": {"concurrency": 0}}}, "spec.handler.concurrency in body should be"),
    ({"spec": {"template": None}}, "spec.template: Required value"),
    ({"spec": {"template": {"spec": {"containers": []}}}}, "should have at least 1 items"),
    (
        {"spec": {"template": {"spec": {"containers": [{"name": "handler"}]}}}},
        "spec.template.spec.containers[0].image: Required value",
    ),
    (
        {"spec": {"template": {"spec": {"containers": [{"name": "Handler", "image": "h:1"}]}}}},
        "spec.template.spec.containers[0].name in body should match",
    ),
    (
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "handler", "image": "h:1"},
                            {"name": "handler", "image": "h:2"},
                        ]
                    }
                }
            }
        },
        "spec.template.spec.containers[1]: Duplicate value",
    ),
    ({"spec": {"sidecar": {"logLevel": "verbose"}}}, "spec.sidecar.logLevel: Unsupported value"),
    (
        {"spec": {"sidecar": {"resources": {"limits": {"cpu": "lots"}}}}},
        "spec.sidecar.resources.limits.cpu in body should match",
    ),
    ({"spec": {"scaling": {"minReplicas": -1}}}, "spec.scaling.minReplicas in body should be"),
    ({"spec": {"scaling": {"maxReplicas": 0}}}, "spec.scaling.maxReplicas in body should be"),
    ({"spec": {"scaling": {"targetPerReplica": 0}}}, "spec.scaling.targetPerReplica in body"),
    ({"spec": {"scaling": {"pollingIntervalSeconds": 0}}}, "spec.scaling.pollingIntervalSecon"),
    ({"spec": {"scaling": {"cooldownSeconds": -5}}}, "spec.scaling.cooldownSeconds in body"),
    ({"spec": {"scaling": {"scaleUp": {"maxStep": 0}}}}, "spec.scaling.scaleUp.maxStep in body"),
    (
        {"spec": {"scaling": {"scaleDown": {"stabilizationWindowSeconds": 3601}}}},
        "spec.scaling.scaleDown.stabilizationWindowSeconds in body should be less than",
    ),
    ({"spec": {"backlogSource": {"type": "kafka"}}}, "spec.backlogSource.type: Unsupported value"),
    (
        {
            "spec": {
                "backlogSource": {
                    "type": "prometheus",
                    "prometheus": {"url": "http://bus:8080/metrics", "metric": "intents-ready"},
                }
            }
        },
        "spec.backlogSource.prometheus.metric in body should match",
    ),
    ({"spec": {"paused": "yes"}}, "spec.paused in body must be of type boolean"),
    ({"spec": {"replicas": -1}}, "spec.replicas in body should be greater than or equal to 0"),
    # A typo is refused, not silently dropped (kubectl asks for strict field validation).
    ({"spec": {"scalling": {"maxReplicas": 3}}}, 'unknown field "spec.scalling"'),
]


@pytest.mark.parametrize(("changes", "expected"), SCHEMA_CASES)
def test_bad_values_are_refused_naming_the_field(
    crd: Cluster, scratch: str, changes: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(crd, worker("bad", scratch, **changes))


def test_kubectl_get_shows_the_printer_columns(crd: Cluster, namespace: str) -> None:
    crd.apply(worker("cols", namespace, spec={"scaling": {"minReplicas": 1, "maxReplicas": 4}}))
    status = {"replicas": 3, "readyReplicas": 2, "backlog": 41, "desiredReplicas": 4}
    assert patch(crd, "cols", namespace, {"status": status}, status=True).returncode == 0

    header, row = crd.kubectl("get", "iw", "-n", namespace).stdout.splitlines()
    assert header.split() == ["NAME", "GOAL", "REPLICAS", "READY", "BACKLOG", "AGE"]
    assert row.split()[:5] == ["cols", "images.resize", "3", "2", "41"]

    header, row = crd.kubectl("get", "iw", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert header.split() == [
        *("NAME", "GOAL", "REPLICAS", "READY", "BACKLOG", "DESIRED", "MIN", "MAX"),
        *("MANUAL", "PAUSED", "AGE"),
    ]
    # MANUAL is empty while autoscaling, so the row has one value fewer than the header.
    assert row.split()[:9] == ["cols", "images.resize", "3", "2", "41", "4", "1", "4", "false"]


def test_the_scale_subresource_reads_and_writes_manual_replicas(
    crd: Cluster, namespace: str
) -> None:
    crd.apply(worker("scaled", namespace, spec={"scaling": {"minReplicas": 1, "maxReplicas": 5}}))
    selector = "intentbus.io/worker=scaled"
    status = {"replicas": 1, "selector": selector}
    assert patch(crd, "scaled", namespace, {"status": status}, status=True).returncode == 0
    # Autoscaling: there is no spec.replicas for /scale to read, and the API server says so.
    answer = scale_of(crd, "scaled", namespace)
    assert answer.returncode != 0
    assert 'the spec replicas field ".spec.replicas" does not exist' in answer.stderr

    crd.kubectl("scale", "iw/scaled", "-n", namespace, "--replicas=2")
    assert stored(crd, "scaled", namespace)["spec"]["replicas"] == 2
    scale = json.loads(scale_of(crd, "scaled", namespace).stdout)
    assert scale["spec"]["replicas"] == 2
    assert scale["status"] == {"replicas": 1, "selector": selector}

    # Manual mode may go below minReplicas (to zero, say, for maintenance) ...
    crd.kubectl("scale", "iw/scaled", "-n", namespace, "--replicas=0")
    assert stored(crd, "scaled", namespace)["spec"]["replicas"] == 0
    # ... but never above maxReplicas, and /scale gets the same answer as the resource.
    done = crd.kubectl("scale", "iw/scaled", "-n", namespace, "--replicas=6", check=False)
    assert done.returncode != 0
    assert "replicas (manual mode) is 6 but scaling.maxReplicas" in done.stderr
    assert stored(crd, "scaled", namespace)["spec"]["replicas"] == 0

    # Removing spec.replicas hands the worker back to the autoscaler.
    assert patch(crd, "scaled", namespace, {"spec": {"replicas": None}}).returncode == 0
    assert "replicas" not in stored(crd, "scaled", namespace)["spec"]


def test_status_changes_only_through_the_status_subresource(crd: Cluster, namespace: str) -> None:
    crd.apply(worker("status", namespace))
    generation = stored(crd, "status", namespace)["metadata"]["generation"]

    # Through the main resource, status is ignored ...
    assert patch(crd, "status", namespace, {"status": {"replicas": 9}}).returncode == 0
    assert "status" not in stored(crd, "status", namespace)

    # ... through /status it is kept, spec changes are ignored, and the generation stays.
    condition = {
        "type": "Ready",
        "status": "True",
        "observedGeneration": generation,
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "reason": "DeploymentAvailable",
        "message": "1/1 replicas available",
    }
    status = {
        "observedGeneration": generation,
        "replicas": 1,
        "readyReplicas": 1,
        "desiredReplicas": 1,
        "backlog": 7,
        "backlogObservedTime": "2026-01-02T03:04:05Z",
        "lastScaleTime": "2026-01-02T03:00:00Z",
        "lastActiveTime": "2026-01-02T03:04:00Z",
        "selector": "intentbus.io/worker=status",
        "scaling": {"lastWorkSeen": 1767322000.5, "recommendations": [[1767322000.5, 1]]},
        "conditions": [condition],
    }
    body = {"spec": {"paused": True}, "status": status}
    assert patch(crd, "status", namespace, body, status=True).returncode == 0
    after = stored(crd, "status", namespace)
    assert after["status"] == status
    assert after["spec"]["paused"] is False
    assert after["metadata"]["generation"] == generation

    # A spec change moves the generation; the status stays until the operator catches up.
    assert patch(crd, "status", namespace, {"spec": {"paused": True}}).returncode == 0
    after = stored(crd, "status", namespace)
    assert after["metadata"]["generation"] == generation + 1
    assert after["status"]["observedGeneration"] == generation


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"status": "Maybe"}, "status.conditions[0].status: Unsupported value"),
        ({"reason": "has spaces"}, 'status.conditions[0].reason: Invalid value: "has spaces"'),
        ({"lastTransitionTime": None}, "status.conditions[0].lastTransitionTime: Required"),
        (
            {"lastTransitionTime": "yesterday"},
            'status.conditions[0].lastTransitionTime: Invalid value: "yesterday"',
        ),
    ],
)
def test_conditions_have_the_kubernetes_shape(
    crd: Cluster, namespace: str, condition: dict[str, Any], expected: str
) -> None:
    crd.apply(worker("conditions", namespace))
    good = {
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
        "reason": "Progressing",
        "message": "0/1 replicas available",
    }
    bad = {"status": {"conditions": [merged(good, condition)]}}
    done = patch(crd, "conditions", namespace, bad, status=True)
    assert done.returncode != 0
    assert expected in done.stderr
    duplicate = {"status": {"conditions": [good, good]}}
    done = patch(crd, "conditions", namespace, duplicate, status=True)
    assert "status.conditions[1]: Duplicate value" in done.stderr


GOAL_IMMUTABLE = "goal is immutable; create another IntentWorker for another goal"


def test_the_goal_is_immutable(crd: Cluster, namespace: str) -> None:
    crd.apply(worker("fixed", namespace))
    done = patch(crd, "fixed", namespace, {"spec": {"goal": "images.crop"}})
    assert done.returncode != 0
    assert f'spec.goal: Invalid value: "string": {GOAL_IMMUTABLE}' in done.stderr
    assert stored(crd, "fixed", namespace)["spec"]["goal"] == "images.resize"

    # Everything else may change, and re-applying the same goal is no change at all.
    changed = worker("fixed", namespace, spec={"scaling": {"maxReplicas": 20}})
    crd.apply(changed)
    assert stored(crd, "fixed", namespace)["spec"]["scaling"]["maxReplicas"] == 20
