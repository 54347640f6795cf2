"""The control plane behaves like Kubernetes: the API features the operator and chart rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetcluster.settings import read_versions
from tests.support.cluster import Cluster, ClusterCommandError, wait_until

GROUP = "harness.intent-fleet.test"


def widget_crd() -> dict:
    """A CRD using what IntentWorker will: defaults, CEL, status and scale subresources."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        }
                                    ],
                                    "properties": {
                                        "min": {"type": "integer", "default": 0},
                                        "max": {"type": "integer", "default": 10},
                                        "replicas": {"type": "integer", "minimum": 0},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"replicas": {"type": "integer"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, namespace: str, **spec: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def widgets(control_plane: Cluster) -> Cluster:
    control_plane.apply(widget_crd())
    control_plane.wait_established(f"widgets.{GROUP}")
    return control_plane


def test_the_server_is_the_pinned_version(control_plane: Cluster) -> None:
    info = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    if control_plane.external:
        assert info["serverVersion"]["major"] == "1"
    else:
        assert info["serverVersion"]["gitVersion"] == read_versions()["KUBERNETES_VERSION"]
    assert info["clientVersion"]["gitVersion"] == read_versions()["KUBERNETES_VERSION"]


def test_schema_defaults_and_cel_rules_are_enforced(widgets: Cluster, namespace: str) -> None:
    with pytest.raises(ClusterCommandError, match="min must not exceed max"):
        widgets.apply(widget("bad", namespace, min=5, max=2))
    assert widgets.get("widget", "bad", "-n", namespace) is None
    with pytest.raises(ClusterCommandError, match=r"spec\.replicas"):
        widgets.apply(widget("negative", namespace, replicas=-1))

    widgets.apply(widget("good", namespace, min=1))
    stored = widgets.get("widget", "good", "-n", namespace)
    assert stored["spec"] == {"min": 1, "max": 10}  # max defaulted by the schema


def test_scale_and_status_subresources(widgets: Cluster, namespace: str) -> None:
    widgets.apply(widget("scaled", namespace, replicas=1))
    widgets.kubectl("scale", "widget/scaled", "--replicas=3", "-n", namespace)
    assert widgets.get("widget", "scaled", "-n", namespace)["spec"]["replicas"] == 3

    # With a status subresource, status moves only through /status ...
    widgets.kubectl(
        "patch",
        "widget/scaled",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"replicas": 9}}),
    )
    assert "status" not in widgets.get("widget", "scaled", "-n", namespace)
    widgets.kubectl(
        "patch",
        "widget/scaled",
        "-n",
        namespace,
        "--type=merge",
        "--subresource=status",
        "-p",
        json.dumps({"status": {"replicas": 2}}),
    )
    scale = json.loads(
        widgets.kubectl(
            "get", "--raw", f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets/scaled/scale"
        ).stdout
    )
    # ... and the scale subresource reads both paths.
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 2


def test_server_side_apply_tracks_owners_and_reports_conflicts(
    control_plane: Cluster, namespace: str
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shared", "namespace": namespace},
        "data": {"mode": "a"},
    }
    body = json.dumps(config)
    control_plane.kubectl("apply", "--server-side", "--field-manager=first", "-f", "-", stdin=body)
    changed = json.dumps({**config, "data": {"mode": "b"}})
    done = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=second", "-f", "-", stdin=changed, check=False
    )
    assert done.returncode != 0
    assert "conflict" in done.stderr.lower()
    control_plane.kubectl(
        "apply",
        "--server-side",
        "--field-manager=second",
        "--force-conflicts",
        "-f",
        "-",
        stdin=changed,
    )
    stored = control_plane.get("configmap", "shared", "-n", namespace, "--show-managed-fields")
    assert stored["data"] == {"mode": "b"}
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert "second" in managers


def test_garbage_collector_deletes_dependents(control_plane: Cluster, namespace: str) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = control_plane.get("configmap", "owner", "-n", namespace)
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                }
            ],
        },
    }
    control_plane.apply(dependent)
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        lambda: control_plane.get("configmap", "dependent", "-n", namespace) is None,
        60,
        "the garbage collector to delete the dependent",
    )


def test_rbac_denies_until_a_role_grants(
    control_plane: Cluster, namespace: str, tmp_path: Path
) -> None:
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = control_plane.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    reader = control_plane.with_token(token, tmp_path / "reader.kubeconfig")
    whoami = json.loads(reader.kubectl("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"

    denied = reader.kubectl("get", "configmaps", "-n", namespace, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    control_plane.kubectl(
        "create", "role", "read-config", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=read-config",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    wait_until(
        lambda: reader.kubectl("get", "configmaps", "-n", namespace, check=False).returncode == 0,
        30,
        "the role binding to take effect",
    )
    still_denied = reader.kubectl("get", "secrets", "-n", namespace, check=False)
    assert "forbidden" in still_denied.stderr.lower()
