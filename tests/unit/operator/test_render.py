"""The rendered Deployment follows docs/architecture.md, "Pod anatomy", for any IntentWorker."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from intent_fleet.operator.errors import InvalidSpecError
from intent_fleet.operator.render import (
    DRAIN_HEADER,
    SIDECAR_NAME,
    WORKER_LABEL,
    RenderSettings,
    drain_token,
    render_deployment,
)
from intent_fleet.operator.spec import parse_worker


def worker_body(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": "resize", "namespace": "media", "uid": "u-1", "generation": 3},
        "spec": {
            "goal": "image.resize",
            "bus": {"url": "http://bus:8080", "credentialsSecretRef": {"name": "bus-key"}},
            "handler": {"port": 8081, "timeoutSeconds": 120},
            "template": {
                "metadata": {"labels": {"team": "media"}},
                "spec": {
                    "containers": [
                        {
                            "name": "handler",
                            "image": "resize:1",
                            "env": [{"name": "A", "value": "1"}],
                        },
                        {"name": "helper", "image": "helper:1"},
                    ]
                },
            },
        },
    }
    body["spec"].update(spec)
    return body


def render(body: dict[str, Any], replicas: int = 2) -> dict[str, Any]:
    return render_deployment(parse_worker(body), replicas, RenderSettings(sidecar_image="sc:1"))


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_sidecar_is_a_native_sidecar_started_first() -> None:
    user_init = {"name": "migrate", "image": "migrate:1"}
    body = worker_body()
    body["spec"]["template"]["spec"]["initContainers"] = [user_init]
    init = pod_spec(render(body))["initContainers"]
    assert [c["name"] for c in init] == [SIDECAR_NAME, "migrate"]
    sidecar = init[0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == "sc:1"
    # Startup must not wait for the handler, which only starts after the sidecar has started.
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_handler_pre_stop_drains_the_sidecar_with_the_token() -> None:
    deployment = render(worker_body())
    handler = pod_spec(deployment)["containers"][0]
    hook = handler["lifecycle"]["preStop"]["httpGet"]
    assert hook["path"] == "/v1/drain"
    assert hook["port"] == RenderSettings().ops_port
    token = drain_token(parse_worker(worker_body()))
    assert hook["httpHeaders"] == [{"name": DRAIN_HEADER, "value": token}]
    sidecar_env = {
        e["name"]: e.get("value") for e in pod_spec(deployment)["initContainers"][0]["env"]
    }
    assert sidecar_env["INTENT_DRAIN_TOKEN"] == token
    # Only the handler (first container) gets the hook; other containers are left alone.
    assert "lifecycle" not in pod_spec(deployment)["containers"][1]


def test_drain_tokens_differ_per_worker() -> None:
    other = worker_body()
    other["metadata"]["uid"] = "u-2"
    assert drain_token(parse_worker(worker_body())) != drain_token(parse_worker(other))


def test_the_api_key_reaches_the_sidecar_only() -> None:
    pod = pod_spec(render(worker_body()))
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert len(secret_volumes) == 1
    volume = secret_volumes[0]
    assert volume["secret"]["secretName"] == "bus-key"
    assert volume["secret"]["items"] == [{"key": "api-key", "path": "api-key"}]
    sidecar = pod["initContainers"][0]
    assert [m["name"] for m in sidecar["volumeMounts"]] == [volume["name"]]
    for container in pod["containers"]:
        assert all(m["name"] != volume["name"] for m in container.get("volumeMounts", []))
        assert all("INTENT_API_KEY" not in e["name"] for e in container.get("env", []))
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["INTENT_API_KEY_FILE"].startswith(sidecar["volumeMounts"][0]["mountPath"])
    assert "INTENT_API_KEY" not in env


def test_sidecar_keeps_its_own_group_and_reads_the_key_through_the_fs_group() -> None:
    # The Secret volume is owned by the pod's fsGroup (mode 0440), which Kubernetes adds to
    # every container's supplemental groups: the sidecar never has to run as that group.
    pod = pod_spec(render(worker_body()))
    sidecar = pod["initContainers"][0]["securityContext"]
    assert sidecar["runAsGroup"] == pod["securityContext"]["fsGroup"] == 65532
    body = worker_body()
    body["spec"]["template"]["spec"]["securityContext"] = {"fsGroup": 2000}
    pod = pod_spec(render(body))
    assert pod["securityContext"]["fsGroup"] == 2000
    assert pod["initContainers"][0]["securityContext"]["runAsGroup"] == 65532
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["defaultMode"] == 0o440


def test_sidecar_is_locked_down() -> None:
    security = pod_spec(render(worker_body()))["initContainers"][0]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_grace_period_covers_the_handler_timeout() -> None:
    pod = pod_spec(render(worker_body()))
    assert pod["terminationGracePeriodSeconds"] == 120 + RenderSettings().grace_margin_seconds
    body = worker_body()
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 900
    assert pod_spec(render(body))["terminationGracePeriodSeconds"] == 900


def test_sidecar_environment_carries_the_spec() -> None:
    body = worker_body(
        bus={
            "url": "https://bus.example:8443",
            "namespace": "tenant-a",
            "credentialsSecretRef": {"name": "k", "key": "token"},
            "capabilities": ["gpu", "fast"],
        }
    )
    env = {e["name"]: e.get("value") for e in pod_spec(render(body))["initContainers"][0]["env"]}
    assert env["INTENT_GOAL"] == "image.resize"
    assert env["INTENT_BUS_URL"] == "https://bus.example:8443"
    assert env["INTENT_NAMESPACE"] == "tenant-a"
    assert env["INTENT_CAPABILITIES"] == "gpu,fast"
    assert env["INTENT_APP_PORT"] == "8081"
    assert env["INTENT_HANDLER_TIMEOUT"] == "120"
    assert int(env["INTENT_DRAIN_TIMEOUT"]) >= 120


def test_an_absent_bus_url_is_the_operators_default_else_refused() -> None:
    body = worker_body(bus={"credentialsSecretRef": {"name": "bus-key"}})
    chart_bus = "http://intent-bus.intent-fleet:8080"
    worker = parse_worker(body, default_bus_url=chart_bus)
    assert worker.bus.url == chart_bus
    env = {
        e["name"]: e.get("value")
        for e in pod_spec(render_deployment(worker, 1, RenderSettings(sidecar_image="sc:1")))[
            "initContainers"
        ][0]["env"]
    }
    assert env["INTENT_BUS_URL"] == chart_bus
    # A URL in the spec wins over the default.
    named = worker_body()
    assert parse_worker(named, default_bus_url=chart_bus).bus.url == "http://bus:8080"
    with pytest.raises(InvalidSpecError, match=r"spec\.bus\.url is required.*--default-bus-url"):
        parse_worker(body)


def test_labels_selector_owner_and_replicas() -> None:
    deployment = render(worker_body(), replicas=4)
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["selector"] == {"matchLabels": {WORKER_LABEL: "resize"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "media"
    assert labels[WORKER_LABEL] == "resize"
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "name": "resize",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_rendering_is_pure() -> None:
    body = worker_body()
    before = copy.deepcopy(body)
    assert render(body) == render(body)
    assert body == before


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda b: b["spec"]["template"]["spec"].update(containers=[]),
            "spec.template.spec.containers",
        ),
        (lambda b: b["spec"]["template"]["spec"]["containers"][0].pop("name"), "containers[0]"),
        (lambda b: b["spec"]["handler"].update(port="80"), "spec.handler.port"),
        (lambda b: b["spec"]["bus"].update(capabilities="gpu"), "spec.bus.capabilities"),
        (lambda b: b["spec"].update(scaling={"minReplicas": 5, "maxReplicas": 2}), "max_replicas"),
    ],
)
def test_bad_specs_name_the_field(mutate: Any, field: str) -> None:
    body = worker_body()
    mutate(body)
    with pytest.raises(InvalidSpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_worker(body)


def test_a_bus_ca_is_mounted_into_the_sidecar_only() -> None:
    plain = pod_spec(render(worker_body()))
    sidecar_env = {e["name"] for e in plain["initContainers"][0]["env"]}
    assert "INTENT_CA_FILE" not in sidecar_env
    assert all("configMap" not in v for v in plain["volumes"])

    body = worker_body(
        bus={
            "url": "https://bus:8443",
            "credentialsSecretRef": {"name": "bus-key"},
            "caConfigMapRef": {"name": "bus-ca", "key": "root.pem"},
        }
    )
    pod = pod_spec(render(body))
    sidecar = pod["initContainers"][0]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["INTENT_CA_FILE"] == "/var/run/intent-fleet/ca/ca.crt"
    assert {m["name"] for m in sidecar["volumeMounts"]} == {
        "intent-fleet-credentials",
        "intent-fleet-ca",
    }
    (ca,) = [v for v in pod["volumes"] if v["name"] == "intent-fleet-ca"]
    assert ca["configMap"] == {"name": "bus-ca", "items": [{"key": "root.pem", "path": "ca.crt"}]}
    for container in pod["containers"]:
        assert not any(
            m["name"].startswith("intent-fleet") for m in container.get("volumeMounts", [])
        )


@pytest.mark.parametrize("name", ["../other", "Bus-CA", "", "a/b"])
def test_a_hostile_ca_configmap_name_is_refused(name: str) -> None:
    body = worker_body(
        bus={
            "url": "https://bus:8443",
            "credentialsSecretRef": {"name": "bus-key"},
            "caConfigMapRef": {"name": name},
        }
    )
    with pytest.raises(InvalidSpecError, match=r"spec\.bus\.caConfigMapRef\.name"):
        parse_worker(body)
