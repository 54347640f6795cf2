"""The operator as a fleet runs it: several replicas with one leader, and many IntentWorkers."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import kopf
import pytest

from intent_fleet.operator import runner
from intent_fleet.operator.backlog_reader import reader_factory
from intent_fleet.operator.settings import LeaderSettings, OperatorSettings
from intent_fleet.protocol import BusClient, ClientSettings
from tests.e2e.test_operator import secret
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, wait_until
from tests.support.operatorproc import OperatorProcess, start_operator


def role(operator: OperatorProcess) -> str:
    try:
        with urllib.request.urlopen(f"http://{operator.listen}/healthz", timeout=2) as answer:
            return str(json.load(answer)["role"])
    except OSError:
        return "down"


def worker(name: str, namespace: str, bus_url: str, goal: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "goal": goal,
            "bus": {"url": bus_url, "credentialsSecretRef": {"name": "bus-key"}},
            "template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}},
            "scaling": {"pollingIntervalSeconds": 1, "targetPerReplica": 5, **scaling},
        },
    }


def replicas(cluster: Cluster, name: str, namespace: str) -> int | None:
    found = cluster.get("deployment", name, "-n", namespace)
    return None if found is None else int(found["spec"]["replicas"])


def test_one_leader_acts_and_a_follower_takes_over(
    crd: Cluster, namespace: str, bus: BusProcess, api_key: str, tmp_path: Path
) -> None:
    secret(crd, namespace, api_key)
    common = ("--leader-election", "--lease-namespace", namespace, "--namespaces", namespace)
    first = start_operator(crd.kubeconfig, tmp_path / "a.log", *common, "--identity", "op-a")
    second = start_operator(crd.kubeconfig, tmp_path / "b.log", *common, "--identity", "op-b")
    try:
        assert sorted([role(first), role(second)]) == ["follower", "leader"]
        leader, follower = (first, second) if role(first) == "leader" else (second, first)
        lease = crd.get("lease", "intent-fleet-operator", "-n", namespace)
        assert lease["spec"]["holderIdentity"] == ("op-a" if leader is first else "op-b")

        crd.apply(worker("led", namespace, bus.url, "e2e.led"))
        wait_until(lambda: replicas(crd, "led", namespace) == 0, 30, "the Deployment")

        leader.kill()  # no release: the follower must wait the lease out
        wait_until(lambda: role(follower) == "leader", 40, "the follower to take the lease")
        lease = crd.get("lease", "intent-fleet-operator", "-n", namespace)
        assert lease["spec"]["holderIdentity"] == ("op-b" if leader is first else "op-a")
        assert lease["spec"]["leaseTransitions"] >= 1

        async def publish() -> None:
            async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=api_key) as c:
                await asyncio.gather(*(c.publish("e2e.led", {"n": n}) for n in range(10)))

        asyncio.run(publish())
        wait_until(lambda: replicas(crd, "led", namespace) == 2, 30, "the new leader to scale")
    finally:
        first.kill()
        second.kill()

        async def drain() -> None:
            async with BusClient(settings=ClientSettings(base_url=bus.url), api_key=api_key) as c:
                while True:
                    outcome = await c.claim("e2e.led", batch=16)
                    if not outcome.intents:
                        return
                    for intent in outcome.intents:
                        await c.fulfill(intent.id, claim_token=intent.claim_token)

        asyncio.run(drain())


FLEET = 200


def test_two_hundred_intent_workers_at_once(
    crd: Cluster, namespace: str, bus: BusProcess, api_key: str, tmp_path: Path
) -> None:
    secret(crd, namespace, api_key)
    log = tmp_path / "operator.log"
    operator = start_operator(
        crd.kubeconfig, log, "--no-leader-election", "--namespaces", namespace
    )
    try:
        items = [
            worker(f"w{i:03d}", namespace, bus.url, f"e2e.fleet.{i}", pollingIntervalSeconds=5)
            for i in range(FLEET)
        ]
        crd.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            timeout=120,
        )

        def deployments() -> int:
            found = crd.get("deployments", "-n", namespace)
            return len(found["items"])

        wait_until(lambda: deployments() == FLEET, 180, f"{FLEET} Deployments", every=2)

        def observed() -> int:
            found = crd.get("intentworkers", "-n", namespace)
            return sum(
                1
                for w in found["items"]
                if (w.get("status") or {}).get("observedGeneration") == w["metadata"]["generation"]
                and any(
                    c["type"] == "BacklogAvailable" and c["status"] == "True"
                    for c in (w.get("status") or {}).get("conditions", [])
                )
            )

        wait_until(
            lambda: observed() == FLEET, 180, f"{FLEET} statuses with a backlog read", every=2
        )
    finally:
        code = operator.stop(timeout=60)
    errors = [
        line for line in log.read_text(errors="replace").splitlines() if '"level":"error"' in line
    ]
    assert errors == [], errors[:5]
    assert code == 0


async def test_a_leader_whose_kopf_fails_gives_the_lease_up_for_good(
    crd: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The renewal is owned by run_operator: once it returns, nothing renews the Lease, so the
    release stands and a follower takes over at once (a stray renewal took it back before)."""

    async def failing_kopf(**_: Any) -> None:
        await asyncio.sleep(1.0)  # the renewal runs several times meanwhile
        raise RuntimeError("kopf fell over")

    monkeypatch.setenv("KUBECONFIG", str(crd.kubeconfig))
    monkeypatch.setattr(kopf, "operator", failing_kopf)
    settings = OperatorSettings(
        namespaces=(namespace,),
        listen="127.0.0.1:0",
        leader=LeaderSettings(
            lease_namespace=namespace, identity="racer", renew_seconds=0.2, lease_seconds=2.0
        ),
    )
    with pytest.raises(ExceptionGroup) as failed:
        await runner.run_operator(settings, reader_factory, asyncio.Event())
    assert failed.group_contains(RuntimeError, match="kopf fell over")

    def holder() -> str | None:
        lease = crd.get("lease", "intent-fleet-operator", "-n", namespace)
        found: str | None = lease["spec"].get("holderIdentity")
        return found

    assert holder() is None
    await asyncio.sleep(5 * settings.leader.renew_seconds)  # five renewals' time
    assert holder() is None
