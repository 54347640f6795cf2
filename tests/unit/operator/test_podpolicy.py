"""Worker pod guardrails: what a template may not ask for, and the defaults it gets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from intent_fleet.operator.errors import InvalidSpecError, PodRefusedError
from intent_fleet.operator.podpolicy import (
    check_template,
    harden,
    referenced_secrets,
    token_service_account,
)
from intent_fleet.operator.render import SIDECAR_NAME, RenderSettings, render_deployment
from intent_fleet.operator.spec import parse_worker
from tests.unit.operator.test_render import worker_body

HANDLER: dict[str, Any] = {"name": "handler", "image": "h:1"}


def template(**pod: Any) -> dict[str, Any]:
    return {"spec": {"containers": [copy.deepcopy(HANDLER)], **pod}}


def container(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(HANDLER), **fields}


# (pod spec fields, the field the refusal must name)
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"hostNetwork": True}, "spec.template.spec.hostNetwork"),
    ({"hostPID": True}, "spec.template.spec.hostPID"),
    ({"hostIPC": True}, "spec.template.spec.hostIPC"),
    ({"shareProcessNamespace": True}, "spec.template.spec.shareProcessNamespace"),
    ({"securityContext": {"fsGroup": 0}}, "spec.template.spec.securityContext.fsGroup"),
    (
        {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
        "spec.template.spec.securityContext.sysctls[0]",
    ),
    (
        {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        "spec.template.spec.securityContext.seccompProfile.type",
    ),
    (
        {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        "spec.template.spec.volumes[0]",
    ),
    (
        {"containers": [container(securityContext={"privileged": True})]},
        "spec.template.spec.containers[0].securityContext.privileged",
    ),
    (
        {"containers": [container(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})]},
        "spec.template.spec.containers[0].securityContext.capabilities.add",
    ),
    (
        {"containers": [container(securityContext={"procMount": "Unmasked"})]},
        "spec.template.spec.containers[0].securityContext.procMount",
    ),
    (
        {"containers": [container(ports=[{"containerPort": 80, "hostPort": 80}])]},
        "spec.template.spec.containers[0].ports[0].hostPort",
    ),
    (
        {"initContainers": [container(securityContext={"privileged": True})]},
        "spec.template.spec.initContainers[0].securityContext.privileged",
    ),
    (
        {
            "containers": [
                container(securityContext={"seLinuxOptions": {"type": "spc_t", "user": "root"}})
            ]
        },
        "seLinuxOptions.type",
    ),
    (
        {"containers": [container(securityContext={"windowsOptions": {"hostProcess": True}})]},
        "windowsOptions.hostProcess",
    ),
    (
        {"containers": [container(securityContext={"appArmorProfile": {"type": "Unconfined"}})]},
        "appArmorProfile.type",
    ),
]


@pytest.mark.parametrize(("pod", "field"), REFUSED)
def test_a_template_breaking_pod_security_baseline_is_refused_naming_the_field(
    pod: dict[str, Any], field: str
) -> None:
    with pytest.raises(PodRefusedError) as refused:
        check_template(template(**pod), credentials_secret="bus-key")
    assert field in str(refused.value)
    assert refused.value.reason == "PodNotAllowed"


def test_every_problem_is_reported_at_once() -> None:
    pod = {"hostNetwork": True, "hostPID": True, "volumes": [{"name": "r", "hostPath": {}}]}
    with pytest.raises(PodRefusedError) as refused:
        check_template(template(**pod), credentials_secret="bus-key")
    assert str(refused.value).count(";") == 2


def test_an_apparmor_annotation_cannot_unconfine_a_container() -> None:
    body = template()
    key = "container.apparmor.security.beta.kubernetes.io/handler"
    body["metadata"] = {"annotations": {key: "unconfined"}}
    with pytest.raises(PodRefusedError, match="AppArmor"):
        check_template(body, credentials_secret="bus-key")


# Every way a pod spec can read the bus key's Secret.
KEY_USES: list[dict[str, Any]] = [
    {"volumes": [{"name": "k", "secret": {"secretName": "bus-key"}}]},
    {
        "volumes": [
            {"name": "k", "projected": {"sources": [{"secret": {"name": "bus-key"}}]}},
        ]
    },
    {
        "containers": [
            container(
                env=[
                    {
                        "name": "K",
                        "valueFrom": {"secretKeyRef": {"name": "bus-key", "key": "api-key"}},
                    }
                ]
            )
        ]
    },
    {"containers": [container(envFrom=[{"secretRef": {"name": "bus-key"}}])]},
    {"initContainers": [container(envFrom=[{"secretRef": {"name": "bus-key"}}])]},
    {
        "volumes": [
            {
                "name": "k",
                "csi": {"driver": "x", "nodePublishSecretRef": {"name": "bus-key"}},
            }
        ]
    },
    {"volumes": [{"name": "k", "cephfs": {"monitors": ["m"], "secretRef": {"name": "bus-key"}}}]},
]


@pytest.mark.parametrize("pod", KEY_USES)
def test_the_template_cannot_reach_the_bus_key_any_way(pod: dict[str, Any]) -> None:
    assert "bus-key" in referenced_secrets(template(**pod)["spec"])
    with pytest.raises(PodRefusedError, match="belongs to the sidecar only"):
        check_template(template(**pod), credentials_secret="bus-key")
    # Through parse_worker too, which is where the operator meets it.
    body = worker_body()
    body["spec"]["template"] = template(**pod)
    with pytest.raises(InvalidSpecError, match="belongs to the sidecar only"):
        parse_worker(body)


@pytest.mark.parametrize("kind", ["containers", "initContainers"])
def test_a_handler_cannot_mount_the_credentials_volume_the_operator_adds(kind: str) -> None:
    mount = {"name": "intent-fleet-credentials", "mountPath": "/stolen"}
    body = worker_body()
    body["spec"]["template"]["spec"][kind] = [container(volumeMounts=[mount])]
    with pytest.raises(PodRefusedError, match="must not mount the operator's volumes"):
        parse_worker(body)
    # Nor define a volume of that name (it would clash with, or stand in for, the real one).
    body = worker_body()
    body["spec"]["template"]["spec"]["volumes"] = [
        {"name": "intent-fleet-credentials", "emptyDir": {}}
    ]
    with pytest.raises(PodRefusedError, match="reserved"):
        parse_worker(body)


def test_image_pull_secrets_are_not_secrets_the_pod_can_read() -> None:
    pod = template(imagePullSecrets=[{"name": "registry"}])["spec"]
    assert referenced_secrets(pod) == frozenset()


def test_a_pod_gets_a_token_only_when_it_asks_for_one() -> None:
    assert token_service_account({"serviceAccountName": "deployer"}) is None
    assert token_service_account({"automountServiceAccountToken": True}) == "default"
    asks = {"automountServiceAccountToken": True, "serviceAccountName": "deployer"}
    assert token_service_account(asks) == "deployer"
    projected = {
        "serviceAccountName": "deployer",
        "volumes": [
            {
                "name": "t",
                "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]},
            }
        ],
    }
    assert token_service_account(projected) == "deployer"


def test_restricted_defaults_fill_in_only_what_the_template_left_out() -> None:
    pod = harden(template()["spec"])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    own = container(
        securityContext={
            "runAsUser": 0,
            "allowPrivilegeEscalation": True,
            "capabilities": {"drop": ["NET_RAW"], "add": ["CHOWN"]},
        }
    )
    pod = harden(template(containers=[own], automountServiceAccountToken=True)["spec"])
    assert pod["automountServiceAccountToken"] is True
    context = pod["containers"][0]["securityContext"]
    # An explicit root user keeps its meaning (a restricted namespace refuses it itself).
    assert "runAsNonRoot" not in context
    assert context["allowPrivilegeEscalation"] is True
    assert context["capabilities"] == {"drop": ["NET_RAW"], "add": ["CHOWN"]}


def test_the_rendered_pod_meets_restricted_everywhere() -> None:
    body = worker_body()
    deployment = render_deployment(parse_worker(body), 1, RenderSettings())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in [*pod["containers"], *pod["initContainers"]]:
        context = c["securityContext"]
        assert context["runAsNonRoot"] is True, c["name"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["capabilities"]["drop"] == ["ALL"], c["name"]
    assert pod["initContainers"][0]["name"] == SIDECAR_NAME
    # The template itself is left as the user wrote it (rendering is pure).
    assert "securityContext" not in body["spec"]["template"]["spec"]["containers"][0]
