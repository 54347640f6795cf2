"""The operator runs under exactly its RBAC, in both modes, and meets no forbidden answer.

Cluster-wide under operator/rbac.yaml, and for a fixed namespace list under what
``intent-fleet operator --namespaces ... --print-rbac`` prints; each with leader election on, as
the chart runs it, authenticated by a real service-account token, through a whole life:
render, scale on a real bus, delete.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.busproc import BusProcess
from tests.support.cluster import REPO, Cluster, wait_until
from tests.support.operatorproc import start_operator

SYSTEM = "intent-fleet-system"


def operator_rbac(cluster: Cluster, *args: str) -> str:
    """What ``intent-fleet operator ... --print-rbac`` prints, the way a user would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "operator", *args, "--print-rbac"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


@pytest.fixture(params=["cluster-wide", "namespaced"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def operator_account(
    crd: Cluster, namespace: str, mode: str, tmp_path: Path
) -> Iterator[tuple[Cluster, str]]:
    """The operator's service account under exactly the RBAC of ``mode``, and its namespace."""
    if mode == "cluster-wide":
        # The README's command, as written: it creates the namespace too.
        system, manifest = SYSTEM, (REPO / "operator" / "rbac.yaml").read_text()
    else:
        # Its own namespace, so it cannot lean on what the cluster-wide rendering left behind.
        system = f"{namespace}-op"
        manifest = operator_rbac(crd, "--namespaces", namespace, "--lease-namespace", system)
    crd.kubectl("apply", "-f", "-", stdin=manifest)
    token = crd.kubectl(
        "create", "token", "intent-fleet-operator", "-n", system, "--duration=1h"
    ).stdout.strip()
    yield crd.with_token(token, tmp_path / "operator.kubeconfig"), system
    crd.kubectl("delete", "-f", "-", "--wait=false", stdin=manifest, check=False)


def test_operator_needs_nothing_beyond_its_rbac(
    crd: Cluster,
    operator_account: tuple[Cluster, str],
    mode: str,
    namespace: str,
    bus: BusProcess,
    api_key: str,
    tmp_path: Path,
) -> None:
    account, system = operator_account
    whoami = account.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{system}:intent-fleet-operator"
    watch = () if mode == "cluster-wide" else ("--namespaces", namespace)
    log = tmp_path / "operator.log"
    operator = start_operator(
        account.kubeconfig,
        log,
        "--leader-election",
        "--lease-namespace",
        system,
        "--lease-name",
        f"rbac-test-{namespace}",
        *watch,
    )
    try:
        crd.credentials_secret(namespace, "bus-key", **{"api-key": api_key})
        crd.apply(
            {
                "apiVersion": "intentbus.io/v1alpha1",
                "kind": "IntentWorker",
                "metadata": {"name": "rbac", "namespace": namespace},
                "spec": {
                    "goal": f"e2e.rbac.{mode}",
                    "bus": {"url": bus.url, "credentialsSecretRef": {"name": "bus-key"}},
                    "template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}},
                    "scaling": {"pollingIntervalSeconds": 1, "targetPerReplica": 5},
                },
            }
        )

        async def publish() -> None:
            async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=api_key) as c:
                await asyncio.gather(*(c.publish(f"e2e.rbac.{mode}", {"n": n}) for n in range(12)))

        asyncio.run(publish())

        def replicas() -> int:
            found = crd.get("deployment", "rbac", "-n", namespace)
            return 0 if found is None else int(found["spec"]["replicas"])

        wait_until(lambda: replicas() == 3, 45, "3 replicas for 12 intents at 5 each")
        lease = crd.get("lease", f"rbac-test-{namespace}", "-n", system)
        assert lease["spec"]["holderIdentity"]
        crd.kubectl("delete", "intentworker", "rbac", "-n", namespace, timeout=60)
        wait_until(lambda: crd.get("deployment", "rbac", "-n", namespace) is None, 60, "GC")
    finally:
        code = operator.stop()
    text = log.read_text(errors="replace")
    # An RBAC refusal always reads "... cannot <verb> resource ...". (Other tests' namespaces
    # being deleted answer 403 too, for another reason, which is not what this test is about.)
    refusals = re.findall(r"cannot \w+ resource [^ ]+ in api group [^ ]+", text)
    assert refusals == [], refusals
    assert "Not enough permissions" not in text  # kopf's own complaint
    assert code == 0, text[-3000:]
    # A clean stop hands the Lease back at once.
    lease = crd.get("lease", f"rbac-test-{namespace}", "-n", system)
    assert not lease["spec"].get("holderIdentity")


def can_i(account: Cluster, *args: str) -> bool:
    done = account.kubectl("auth", "can-i", *args, check=False)
    return done.stdout.strip() == "yes"


def test_watching_a_namespace_list_can_read_nothing_elsewhere(
    crd: Cluster, namespace: str, tmp_path: Path
) -> None:
    system = f"{namespace}-op"
    manifest = operator_rbac(crd, "--namespaces", namespace, "--lease-namespace", system)
    crd.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        token = crd.kubectl(
            "create", "token", "intent-fleet-operator", "-n", system, "--duration=10m"
        ).stdout.strip()
        account = crd.with_token(token, tmp_path / "operator.kubeconfig")
        assert can_i(account, "get", "secrets", "-n", namespace)
        assert can_i(account, "patch", "deployments", "-n", namespace)
        for elsewhere in ("kube-system", "default", system):
            for verb, resource in (("get", "secrets"), ("list", "pods"), ("patch", "deployments")):
                assert not can_i(account, verb, resource, "-n", elsewhere), (verb, resource)
        assert not can_i(account, "list", "customresourcedefinitions")
        assert not can_i(account, "list", "namespaces")
        assert can_i(account, "update", "leases", "-n", system)
    finally:
        crd.kubectl("delete", "-f", "-", "--wait=false", stdin=manifest, check=False)
