"""charts/intent-fleet rendered by helm and judged by the real API server.

`helm lint --strict`, then `helm template` with the value sets users pick, each accepted by the
API server's server-side dry-run (the ServiceMonitor against the Prometheus Operator's own CRD);
the schema refuses what it must, and the rendered objects keep the promises the values make.
Installing it for real is tests/e2e/test_chart_install.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetcluster.release import CHART
from fleetcluster.settings import ClusterSettings
from intent_fleet import __version__
from tests.support.cluster import Cluster

HELM = ClusterSettings().helm_bin / "helm"


def helm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HELM), *args], input=stdin, capture_output=True, text=True, check=False, timeout=120
    )


def render(namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    done = helm(
        "template", "r", str(CHART), "-n", namespace, "-f", "-", stdin=yaml.safe_dump(values)
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def test_helm_lint_strict_passes() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.fixture(scope="module")
def servicemonitor_crd(control_plane: Cluster) -> None:
    """The Prometheus Operator's ServiceMonitor CRD, as the chart's users have it installed."""
    crd = ClusterSettings().servicemonitor_crd
    control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    control_plane.wait_established("servicemonitors.monitoring.coreos.com")


def value_sets(team: str) -> dict[str, dict[str, Any]]:
    return {
        "defaults": {},
        "watch-namespaces": {"operator": {"watchNamespaces": [team]}},
        "no-bus": {"bus": {"enabled": False}},
        "bus-without-volume": {
            "bus": {"persistence": {"enabled": False}, "requireSignatures": True}
        },
        "replicas-on-postgres": {
            "bus": {"replicas": 3, "database": {"existingSecret": "bus-db", "poolSize": 8}}
        },
        "existing-claim-and-secret": {
            "bus": {"existingSecret": "my-admin", "persistence": {"existingClaim": "my-data"}}
        },
        "one-replica-no-extras": {
            "operator": {
                "replicas": 1,
                "leaderElection": False,
                "podDisruptionBudget": {"enabled": False},
                "metrics": {"service": {"enabled": False}},
                "topologySpread": False,
            },
            "crds": {"install": False},
        },
        "servicemonitor-and-ca": {
            "operator": {
                "busCAConfigMap": "bus-ca",
                "backlogAllow": ["10.0.0.0/8", "bus.example.internal"],
                "credentialsOptIn": False,
                "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
            }
        },
    }


@pytest.mark.parametrize("name", list(value_sets("team")))
def test_every_value_set_passes_the_api_servers_dry_run(
    name: str, control_plane: Cluster, namespace: str, servicemonitor_crd: None
) -> None:
    team = control_plane.namespace("team")
    documents = render(namespace, value_sets(team)[name])
    # Admission looks the `helm test` Pod's ServiceAccount up, which a dry run never creates:
    # that one object is created for real (Helm creates it first too, by hook weight).
    for account in of_kind(documents, "ServiceAccount"):
        if (account["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test":
            control_plane.apply(account)
    body = yaml.safe_dump_all(documents)
    done = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=body, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # Every object the set renders was judged: one line per object in kubectl's answer.
    assert done.stdout.count("(server dry run)") == len(documents), done.stdout


def test_the_schema_refuses_unknown_keys_and_wrong_types() -> None:
    for args, named in [
        (["--set", "operator.replica=2"], "replica"),
        (["--set", "bus.persistence.sise=2Gi"], "sise"),
        (["--set", "operator.replicas=two"], "replicas"),
        (["--set", "operator.logLevel=loud"], "logLevel"),
        (["--set", "bus.rateLimit=-1"], "rateLimit"),
    ]:
        done = helm("template", "r", str(CHART), *args)
        assert done.returncode != 0, f"{args} was accepted"
        assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
        assert named in done.stderr, done.stderr


def test_defaults_keep_the_promises_of_the_values(namespace: str) -> None:
    documents = render(namespace, {})
    (deployment,) = of_kind(documents, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"localhost/intent-fleet/operator:{__version__}"
    args = container["args"]
    assert "--leader-election" in args and "--credentials-opt-in" in args
    assert f"--sidecar-image=localhost/intent-fleet/sidecar:{__version__}" in args
    assert "--namespaces=" in args  # the whole cluster
    # IntentWorkers that name no bus get the chart's own.
    assert f"--default-bus-url=http://intent-bus.{namespace}:8080" in args
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["runAsNonRoot"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    (crd,) = of_kind(documents, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    source = yaml.safe_load(
        (Path(CHART).parents[1] / "crds" / f"{crd['metadata']['name']}.yaml").read_text()
    )
    assert crd["spec"] == source["spec"]
    (cluster_role,) = of_kind(documents, "ClusterRole")
    assert of_kind(documents, "Role") and all(
        r["metadata"]["namespace"] == namespace for r in of_kind(documents, "Role")
    )  # the leader Lease's Role only
    assert any("intentworkers" in rule["resources"] for rule in cluster_role["rules"])
    (statefulset,) = of_kind(documents, "StatefulSet")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    (service,) = [s for s in of_kind(documents, "Service") if s["metadata"]["name"] == "intent-bus"]
    assert service["spec"]["ports"][0]["port"] == 8080
    assert of_kind(documents, "PodDisruptionBudget")
    assert not of_kind(documents, "ServiceMonitor")


def test_watch_namespaces_grant_nothing_cluster_wide(namespace: str) -> None:
    documents = render(namespace, {"operator": {"watchNamespaces": ["team-a", "team-b"]}})
    assert not of_kind(documents, "ClusterRole")
    assert not of_kind(documents, "ClusterRoleBinding")
    roles = of_kind(documents, "Role")
    watched = {r["metadata"]["namespace"] for r in roles if r["metadata"]["namespace"] != namespace}
    assert watched == {"team-a", "team-b"}
    (deployment,) = of_kind(documents, "Deployment")
    assert (
        "--namespaces=team-a,team-b"
        in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_without_the_chart_bus_intent_workers_must_name_theirs(namespace: str) -> None:
    def args(values: dict[str, Any]) -> list[str]:
        (deployment,) = of_kind(render(namespace, values), "Deployment")
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    assert "--default-bus-url=" in args({"bus": {"enabled": False}})
    own = "https://bus.example.internal:8443"
    assert f"--default-bus-url={own}" in args({"operator": {"defaultBusURL": own}})
    done = helm("template", "r", str(CHART), "--set", "operator.defaultBusURL=bus:8080")
    assert done.returncode != 0 and "defaultBusURL" in done.stderr, done.stderr


def test_crds_keep_off_lets_the_crd_go_with_the_release(namespace: str) -> None:
    documents = render(namespace, {"crds": {"keep": False}})
    (crd,) = of_kind(documents, "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})
    assert not of_kind(render(namespace, {"crds": {"install": False}}), "CustomResourceDefinition")


def test_bus_replicas_share_postgres_as_a_deployment_with_a_disruption_budget(
    namespace: str,
) -> None:
    documents = render(
        namespace, {"bus": {"replicas": 3, "database": {"existingSecret": "bus-db"}}}
    )
    assert not of_kind(documents, "StatefulSet")
    [bus] = [d for d in of_kind(documents, "Deployment") if d["metadata"]["name"] == "intent-bus"]
    assert bus["spec"]["replicas"] == 3
    pod = bus["spec"]["template"]["spec"]
    [container] = pod["containers"]
    # The URL comes from a file of the Secret: never on the command line or in the environment.
    assert "--db-file=/var/run/intent-bus-db/url" in container["args"]
    assert not any(a.startswith("--db=") for a in container["args"])
    assert "env" not in container
    [database] = [v for v in pod["volumes"] if v["name"] == "database"]
    assert database["secret"]["secretName"] == "bus-db"
    assert database["secret"]["items"] == [{"key": "url", "path": "url"}]
    assert not [v for v in pod["volumes"] if v["name"] == "data"]  # stateless replicas
    [budget] = [
        d
        for d in of_kind(documents, "PodDisruptionBudget")
        if d["metadata"]["name"] == "intent-bus"
    ]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == bus["spec"]["selector"]


def test_several_bus_replicas_without_a_database_are_refused() -> None:
    done = helm("template", "r", str(CHART), "--set", "bus.replicas=2")
    assert done.returncode != 0
    assert "bus.replicas above 1 needs bus.database.existingSecret" in done.stderr
