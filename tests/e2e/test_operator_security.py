"""An IntentWorker author attacks the operator, on a real API server, and gets nothing.

The operator runs under the cluster-wide RBAC (it may read every Secret of the cluster), as its
own service account. The attacker, "mallory", is a service account that may create
IntentWorkers in her namespace and read their Events, and nothing else: no Secrets, no
Deployments. Whatever she writes, no Secret value reaches her server (a recorder on loopback,
which the operator is allowed to reach, so that a leak would show), and the API server's audit
log shows the operator asking for nothing outside the namespaces it serves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from intent_fleet.operator.credentials import OPT_IN_LABEL
from intent_fleet.operator.errors import InvalidNameError
from intent_fleet.operator.kube import SECRETS, connect
from tests.support.cluster import Cluster, wait_until
from tests.support.hostserver import Seen, host_server
from tests.support.operatorproc import OperatorProcess, start_operator
from tests.unit.operator.test_names import HOSTILE_NAMES

OPERATOR = "intent-fleet-operator"


@dataclass
class World:
    """Who is who, for one module: the operator's view and mallory's."""

    admin: Cluster
    mallory: Cluster
    #: Mallory's namespace: she may create IntentWorkers here.
    attacker: str
    #: Another tenant's namespace, with a Secret that has even opted in.
    victim: str
    #: The operator's namespace and its full user name (for the audit log).
    system: str
    operator_user: str
    operator_kubeconfig: Path
    stolen: str
    hunter2: str


def mallory_role(namespace: str) -> list[dict[str, Any]]:
    rules = [
        {
            "apiGroups": ["intentbus.io"],
            "resources": ["intentworkers"],
            "verbs": ["create", "get", "list", "watch", "update", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]},
    ]
    meta = {"name": "mallory", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mallory"},
            "subjects": [{"kind": "ServiceAccount", "name": "mallory", "namespace": namespace}],
        },
    ]


@pytest.fixture(scope="module")
def world(crd: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("security")
    attacker, victim = crd.namespace("mallory"), crd.namespace("victim")
    system = f"{attacker}-op"
    # The cluster-wide rendering: the operator may get any Secret anywhere.
    rbac = subprocess.run(
        [
            sys.executable,
            "-m",
            "intent_fleet.cli.main",
            "operator",
            "--lease-namespace",
            system,
            "--print-rbac",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    crd.kubectl("apply", "-f", "-", stdin=rbac)
    crd.apply(*mallory_role(attacker))
    stolen, hunter2 = f"STOLEN-{uuid.uuid4().hex}", f"HUNTER2-{uuid.uuid4().hex}"
    # Even opted in: only namespace isolation protects it from mallory.
    crd.credentials_secret(victim, "victim", **{"api-key": stolen, "token": stolen})
    crd.credentials_secret(attacker, "db-password", opt_in=False, **{"api-key": hunter2})

    def token(namespace: str, account: str) -> str:
        return crd.kubectl(
            "create", "token", account, "-n", namespace, "--duration=1h"
        ).stdout.strip()

    operator_kubeconfig = tmp / "operator.kubeconfig"
    crd.with_token(token(system, OPERATOR), operator_kubeconfig)
    mallory = crd.with_token(token(attacker, "mallory"), tmp / "mallory.kubeconfig")
    yield World(
        admin=crd,
        mallory=mallory,
        attacker=attacker,
        victim=victim,
        system=system,
        operator_user=f"system:serviceaccount:{system}:{OPERATOR}",
        operator_kubeconfig=operator_kubeconfig,
        stolen=stolen,
        hunter2=hunter2,
    )
    crd.kubectl("delete", "-f", "-", "--wait=false", stdin=rbac, check=False)


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, Seen]]:
    """Mallory's server: every request and header it receives is kept."""
    with host_server("127.0.0.1") as served:
        yield served


@pytest.fixture(scope="module")
def operator(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """Serving mallory's namespace, with loopback allowed so her recorder is reachable."""
    proc = start_operator(
        world.operator_kubeconfig,
        tmp_path_factory.mktemp("security-operator") / "operator.log",
        "--no-leader-election",
        "--namespaces",
        world.attacker,
    )
    yield proc
    assert proc.stop() == 0, proc.logs()[-3000:]


def worker(name: str, namespace: str, url: str, secret: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "goal": "steal",
            "bus": {"url": url, "credentialsSecretRef": {"name": secret}},
            "template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}},
            "scaling": {"pollingIntervalSeconds": 1},
        },
    }
    body["spec"].update(spec)
    return body


def create(cluster: Cluster, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", "-f", "-", stdin=json.dumps(body), check=False)


def ready_condition(world: World, name: str) -> dict[str, Any] | None:
    found = world.mallory.get("intentworker", name, "-n", world.attacker) or {}
    for entry in (found.get("status") or {}).get("conditions", []):
        if entry["type"] == "Ready":
            return dict(entry)
    return None


def refused(world: World, name: str, reason: str) -> dict[str, Any]:
    return wait_until(
        lambda: (c := ready_condition(world, name)) and c["reason"] == reason and c,
        30,
        f"{name}: Ready=False {reason}",
    )


def warnings(world: World, name: str) -> list[dict[str, Any]]:
    events = world.mallory.get(
        "events", "-n", world.attacker, "--field-selector", f"involvedObject.name={name}"
    )
    return [e for e in (events or {}).get("items", []) if e.get("type") == "Warning"]


# --- names: refused at apply, and never a path to another namespace -------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_secret_name_is_refused_at_apply(world: World, name: str) -> None:
    body = worker("hostile", world.attacker, "http://bus.example:8080", name)
    answer = create(world.mallory, body)
    assert answer.returncode != 0
    assert "spec.bus.credentialsSecretRef.name" in answer.stderr
    prom = {"url": "http://p.example/metrics", "metric": "m", "authSecretRef": {"name": name}}
    body = worker(
        "hostile",
        world.attacker,
        "http://bus.example:8080",
        "bus-key",
        backlogSource={"type": "prometheus", "prometheus": prom},
    )
    answer = create(world.mallory, body)
    assert answer.returncode != 0
    assert "spec.backlogSource.prometheus.authSecretRef.name" in answer.stderr
    body = worker("hostile", world.attacker, "https://bus.example:8443", "bus-key")
    body["spec"]["bus"]["caConfigMapRef"] = {"name": name}
    answer = create(world.mallory, body)
    assert answer.returncode != 0
    assert "spec.bus.caConfigMapRef.name" in answer.stderr


def test_the_api_client_sends_no_hostile_name_to_the_api_server(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth, as the operator's own account: refused before any request."""
    monkeypatch.setenv("KUBECONFIG", str(world.operator_kubeconfig))

    async def attempt() -> list[str]:
        api = await connect()
        refusals = []
        try:
            for name in HOSTILE_NAMES:
                for namespace in (world.attacker, f"{world.attacker}/../{world.victim}"):
                    with pytest.raises(InvalidNameError) as caught:
                        await api.get(SECRETS, namespace, name)
                    refusals.append(str(caught.value))
            # The same client reads a valid name for real: it is the name that was refused.
            victim = await api.get(SECRETS, world.victim, "victim")
            assert victim["metadata"]["name"] == "victim"
        finally:
            await api.close()
        return refusals

    refusals = asyncio.run(attempt())
    assert len(refusals) == 2 * len(HOSTILE_NAMES)
    if world.admin.audit_log is not None:
        asked = [
            e["objectRef"].get("name")
            for e in world.admin.audited(world.operator_user)
            if e["objectRef"].get("namespace") == world.victim
        ]
        # Only the one valid read above; not one hostile name became a request.
        assert asked == ["victim"], asked


# --- the confused deputy: her worker cannot get a Secret's value out ------------------------


def test_an_unlabelled_secret_is_never_read_nor_sent(
    world: World, operator: OperatorProcess, recorder: tuple[str, Seen]
) -> None:
    url, seen = recorder
    assert (
        create(world.mallory, worker("steal", world.attacker, url, "db-password")).returncode == 0
    )
    assert (
        create(world.mallory, worker("probe", world.attacker, url, "no-such-secret")).returncode
        == 0
    )
    steal, probe = (
        refused(world, "steal", "CredentialsNotPermitted"),
        refused(world, "probe", "CredentialsNotPermitted"),
    )
    assert steal["status"] == "False"
    command = f"kubectl label secret db-password -n {world.attacker} {OPT_IN_LABEL}=true"
    assert command in steal["message"]
    # A missing Secret and an unlabelled one answer alike: no existence oracle.
    assert steal["message"].replace("db-password", "X") == probe["message"].replace(
        "no-such-secret", "X"
    )
    events = wait_until(lambda: warnings(world, "steal"), 30, "a Warning event on steal")
    assert events[0]["reason"] == "CredentialsNotPermitted"
    assert command in events[0]["message"]
    # Nothing was made for it, and nothing left.
    assert world.admin.get("deployment", "steal", "-n", world.attacker) is None
    assert world.hunter2 not in seen.everything()


def test_the_template_cannot_pull_an_unlabelled_secret_into_the_pod(
    world: World, operator: OperatorProcess, recorder: tuple[str, Seen]
) -> None:
    url, seen = recorder
    world.admin.credentials_secret(world.attacker, "bus-key", **{"api-key": "mallorys-own-key"})
    env = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "api-key"}}}]
    template = {"spec": {"containers": [{"name": "h", "image": "h:1", "env": env}]}}
    body = worker("envsteal", world.attacker, url, "bus-key", template=template)
    assert create(world.mallory, body).returncode == 0
    condition = refused(world, "envsteal", "CredentialsNotPermitted")
    assert "'db-password'" in condition["message"]
    assert world.admin.get("deployment", "envsteal", "-n", world.attacker) is None
    # Nor the bus key itself into the handler: it belongs to the sidecar.
    volumes = [{"name": "k", "secret": {"secretName": "bus-key"}}]
    template = {"spec": {"containers": [{"name": "h", "image": "h:1"}], "volumes": volumes}}
    body = worker("keysteal", world.attacker, url, "bus-key", template=template)
    assert create(world.mallory, body).returncode == 0
    condition = refused(world, "keysteal", "PodNotAllowed")
    assert "belongs to the sidecar only" in condition["message"]
    assert world.hunter2 not in seen.everything()


def test_a_secret_of_another_namespace_cannot_be_named_at_all(
    world: World, operator: OperatorProcess, recorder: tuple[str, Seen]
) -> None:
    url, seen = recorder
    # The only names left are plain ones, and they resolve in her own namespace.
    assert create(world.mallory, worker("cross", world.attacker, url, "victim")).returncode == 0
    condition = refused(world, "cross", "CredentialsNotPermitted")
    assert world.victim not in condition["message"]
    assert world.stolen not in seen.everything()


def test_a_deployment_she_does_not_own_is_left_alone(
    world: World, operator: OperatorProcess, recorder: tuple[str, Seen]
) -> None:
    url, _ = recorder
    world.admin.kubectl(
        "create",
        "deployment",
        "payments",
        "--image=payments:1",
        "--replicas=2",
        "-n",
        world.attacker,
    )
    before = world.admin.get("deployment", "payments", "-n", world.attacker)
    world.admin.credentials_secret(world.attacker, "bus-key-2", **{"api-key": "k"})
    assert (
        create(world.mallory, worker("payments", world.attacker, url, "bus-key-2")).returncode == 0
    )
    condition = refused(world, "payments", "DeploymentNotOwned")
    assert "not controlled by this IntentWorker" in condition["message"]
    wait_until(lambda: warnings(world, "payments"), 30, "a Warning event on payments")
    after = world.admin.get("deployment", "payments", "-n", world.attacker)
    # Its controllers may update its status; nothing of ours touched it.
    assert after["spec"] == before["spec"]
    assert after["metadata"].get("labels") == before["metadata"].get("labels")
    assert not after["metadata"].get("ownerReferences")
    managers = {m["manager"] for m in after["metadata"].get("managedFields", [])}
    assert "intent-fleet-operator" not in managers, managers


# --- egress: the operator's own network position is not hers to use -------------------------


@pytest.fixture(scope="module")
def strict_operator(
    world: World, crd: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, str]]:
    """Another operator, in its default egress policy, serving a namespace of its own."""
    namespace = crd.namespace("egress")
    world.admin.credentials_secret(namespace, "bus-key", **{"api-key": "k"})
    proc = start_operator(
        world.operator_kubeconfig,
        tmp_path_factory.mktemp("strict-operator") / "operator.log",
        "--no-leader-election",
        "--namespaces",
        namespace,
        egress=(),
    )
    yield proc, namespace
    assert proc.stop() == 0, proc.logs()[-3000:]


def backlog_condition(cluster: Cluster, name: str, namespace: str) -> dict[str, Any] | None:
    found = cluster.get("intentworker", name, "-n", namespace) or {}
    for entry in (found.get("status") or {}).get("conditions", []):
        if entry["type"] == "BacklogAvailable":
            return dict(entry)
    return None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]:8080", "link-local"),
        ("http://127.0.0.1:{port}", "the operator's own loopback"),
        ("http://localhost:{port}", "the operator's own loopback"),
    ],
)
def test_metadata_and_the_operators_loopback_are_out_of_reach(
    world: World,
    strict_operator: tuple[OperatorProcess, str],
    recorder: tuple[str, Seen],
    url: str,
    why: str,
) -> None:
    proc, namespace = strict_operator
    recorder_url, seen = recorder
    before = len(seen.paths())
    target = url.format(port=recorder_url.rsplit(":", 1)[1])
    name = f"egress-{uuid.uuid4().hex[:6]}"
    world.admin.apply(worker(name, namespace, target, "bus-key"))
    condition = wait_until(
        lambda: (
            (c := backlog_condition(world.admin, name, namespace)) and c["status"] == "False" and c
        ),
        30,
        f"{name}: BacklogAvailable=False",
    )
    assert why in condition["message"]
    assert len(seen.paths()) == before  # not one request reached the loopback server
    assert proc.proc.poll() is None


def test_the_cluster_wide_operator_really_could_read_the_victim(world: World) -> None:
    """The premise of this module: without the checks, nothing else stood in the way."""
    can = world.admin.kubectl(
        "auth",
        "can-i",
        "get",
        "secrets",
        "-n",
        world.victim,
        f"--as={world.operator_user}",
    )
    assert can.stdout.strip() == "yes"
    mallory = world.mallory.kubectl(
        "auth", "can-i", "get", "secrets", "-n", world.attacker, check=False
    )
    assert mallory.stdout.strip() == "no"


def test_the_operators_asked_for_nothing_outside_their_namespaces(
    world: World, operator: OperatorProcess, strict_operator: tuple[OperatorProcess, str]
) -> None:
    """Last in the module: every request the operators made is in the audit log by now."""
    if world.admin.audit_log is None:
        pytest.skip("only the harness's own API server keeps an audit log")  # external cluster
    namespaces = {
        e["objectRef"].get("namespace")
        for e in world.admin.audited(world.operator_user)
        if e["objectRef"].get("name") != "victim"  # the deliberate read of the client test
    }
    assert namespaces <= {world.attacker, strict_operator[1]}, namespaces
    assert world.attacker in namespaces  # the log did record the operator's own reads
