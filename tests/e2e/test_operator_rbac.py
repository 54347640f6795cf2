"""The operator runs under operator/rbac.yaml alone and meets no forbidden answer.

It runs cluster-wide with leader election on, as the chart runs it, authenticated by a real
service-account token, through a whole life: render, scale on a real bus, delete.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.busproc import BusProcess
from tests.support.cluster import REPO, Cluster, wait_until
from tests.support.operatorproc import start_operator

SYSTEM = "intent-fleet-system"


@pytest.fixture
def operator_account(crd: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    # The README's command, as written: it creates the namespace too.
    crd.kubectl("apply", "-f", str(REPO / "operator" / "rbac.yaml"))
    token = crd.kubectl(
        "create", "token", "intent-fleet-operator", "-n", SYSTEM, "--duration=1h"
    ).stdout.strip()
    yield crd.with_token(token, tmp_path / "operator.kubeconfig")
    crd.kubectl("delete", "-f", str(REPO / "operator" / "rbac.yaml"), "--wait=false", check=False)


def test_operator_needs_nothing_beyond_its_rbac(
    crd: Cluster,
    operator_account: Cluster,
    namespace: str,
    bus: BusProcess,
    api_key: str,
    tmp_path: Path,
) -> None:
    whoami = operator_account.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    )
    assert whoami.stdout == f"system:serviceaccount:{SYSTEM}:intent-fleet-operator"
    log = tmp_path / "operator.log"
    operator = start_operator(
        operator_account.kubeconfig,
        log,
        "--leader-election",
        "--lease-namespace",
        SYSTEM,
        "--lease-name",
        f"rbac-test-{namespace}",
    )
    try:
        crd.credentials_secret(namespace, "bus-key", **{"api-key": api_key})
        crd.apply(
            {
                "apiVersion": "intentbus.io/v1alpha1",
                "kind": "IntentWorker",
                "metadata": {"name": "rbac", "namespace": namespace},
                "spec": {
                    "goal": "e2e.rbac",
                    "bus": {"url": bus.url, "credentialsSecretRef": {"name": "bus-key"}},
                    "template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}},
                    "scaling": {"pollingIntervalSeconds": 1, "targetPerReplica": 5},
                },
            }
        )

        async def publish() -> None:
            async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=api_key) as c:
                await asyncio.gather(*(c.publish("e2e.rbac", {"n": n}) for n in range(12)))

        asyncio.run(publish())

        def replicas() -> int:
            found = crd.get("deployment", "rbac", "-n", namespace)
            return 0 if found is None else int(found["spec"]["replicas"])

        wait_until(lambda: replicas() == 3, 45, "3 replicas for 12 intents at 5 each")
        lease = crd.get("lease", f"rbac-test-{namespace}", "-n", SYSTEM)
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
    assert code == 0, text[-3000:]
    # A clean stop hands the Lease back at once.
    lease = crd.get("lease", f"rbac-test-{namespace}", "-n", SYSTEM)
    assert not lease["spec"].get("holderIdentity")
