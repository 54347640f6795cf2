"""`helm install intent-fleet` on a real node, used the way NOTES.txt tells users to.

The operator runs in-cluster from its image (two replicas, one leader), the bus is the chart's
StatefulSet on a bound PersistentVolumeClaim, the README's IntentWorker (Python example handler)
is woken from zero by intents published from the host through the bus Service, fulfils every
one and goes back to zero. Then `helm test`, an upgrade that changes values and the CRD (the
leader handed over, never lost to an expired Lease), and an uninstall that keeps the CRD and the
bus's data, which a reinstall finds again. The release's namespace enforces Pod Security
"restricted" throughout, so every pod of the chart is admitted by it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetcluster.release import BUS_NAME, BUS_PORT, CHART, CRD_NAME, Release
from intent_fleet.operator.settings import LeaderSettings
from tests.support.cluster import (
    Cluster,
    count_fulfilled,
    project_image,
    publish_many,
    readme_worker,
    wait_until,
)

COUNT = 40
GOAL = "e2e.chart"
LEASE = "intent-fleet-operator"


@dataclass
class Installed:
    release: Release
    team: str
    installed_in: float
    leader_after: float
    key: str = ""
    published: list[str] = field(default_factory=list)


def lease_holder(cluster: Cluster, namespace: str) -> str:
    lease = cluster.get("lease", LEASE, "-n", namespace)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def operator_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", "-l", "app.kubernetes.io/component=operator", "-n", namespace)
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def installed(node_cluster: Cluster) -> Iterator[Installed]:
    fleet = node_cluster.namespace("fleet")
    # The chart's own pods (operator, bus, `helm test`) must pass Pod Security "restricted".
    node_cluster.kubectl(
        "label", "namespace", fleet, "pod-security.kubernetes.io/enforce=restricted"
    )
    team = node_cluster.namespace("team")
    release = node_cluster.release("intent-fleet", fleet)
    started = time.monotonic()
    notes = release.install({"operator": {"watchNamespaces": [team]}})
    installed_in = time.monotonic() - started
    wait_until(lambda: lease_holder(node_cluster, fleet), 60, "an operator replica to lead")
    leader_after = time.monotonic() - started
    print(
        f"\nhelm install --wait: {installed_in:.1f} s; operator leading after {leader_after:.1f} s"
    )
    assert f"http://{BUS_NAME}.{fleet}:{BUS_PORT}" in notes
    try:
        yield Installed(release, team, installed_in, leader_after)
    finally:
        release.remove([team])
        release.restore_crd()


def test_the_operator_runs_from_its_image_and_one_replica_leads(
    node_cluster: Cluster, installed: Installed
) -> None:
    fleet = installed.release.namespace
    pods = wait_until(
        lambda: [p for p in operator_pods(node_cluster, fleet) if ready(p)] or None,
        60,
        "ready operator pods",
    )
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"] == project_image("operator")
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert lease_holder(node_cluster, fleet) in {p["metadata"]["name"] for p in pods}


def test_the_bus_keeps_its_database_on_a_bound_claim(
    node_cluster: Cluster, installed: Installed
) -> None:
    fleet = installed.release.namespace
    claim = node_cluster.get("pvc", f"data-{BUS_NAME}-0", "-n", fleet)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"  # the cluster's default class
    bus = node_cluster.get("pod", f"{BUS_NAME}-0", "-n", fleet)
    assert ready(bus) and bus["spec"]["containers"][0]["image"] == project_image("sidecar")


def test_the_notes_walk_through_wakes_the_readme_worker_from_zero(
    node_cluster: Cluster, installed: Installed
) -> None:
    release, team = installed.release, installed.team
    # NOTES.txt, steps 1-3: a key made inside the bus pod, its labelled Secret, the worker.
    installed.key = release.tenant_key(team)
    release.key_secret(team, installed.key)
    body = readme_worker()
    body["metadata"]["namespace"] = team
    spec = body["spec"]
    spec["goal"] = GOAL
    # As NOTES.txt has it: no bus URL, so the operator's default, the chart's own bus.
    del spec["bus"]["url"]
    (handler,) = spec["template"]["spec"]["containers"]
    handler["image"] = project_image("handler-python")
    spec["scaling"].update(pollingIntervalSeconds=1, cooldownSeconds=5, maxReplicas=4)
    name = body["metadata"]["name"]
    node_cluster.apply(body)

    def worker_ready() -> bool:
        found = node_cluster.get("intentworker", name, "-n", team)
        conditions = (found or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_until(worker_ready, 60, "the in-cluster operator to make the worker Ready")
    deployment = node_cluster.get("deployment", name, "-n", team)
    assert deployment["spec"]["replicas"] == 0  # nothing to do yet: zero pods

    with node_cluster.service_url(release.namespace, BUS_NAME, BUS_PORT) as url:
        installed.published = asyncio.run(publish_many(url, installed.key, GOAL, COUNT))
        wait_until(
            lambda: asyncio.run(count_fulfilled(url, installed.key, installed.published)) == COUNT,
            240,
            f"all {COUNT} intents fulfilled by the worker pods",
            every=1,
        )
    wait_until(
        lambda: (
            not node_cluster.get("pods", "-l", f"intentbus.io/worker={name}", "-n", team)["items"]
        ),
        180,
        "the worker back at zero pods after the cooldown",
        every=1,
    )
    events = node_cluster.kubectl("get", "events", "-n", team).stdout
    assert "Scaled" in events


def test_helm_test_proves_the_bus_answers_and_the_operator_leads(installed: Installed) -> None:
    logs = installed.release.test()
    assert "Phase:          Succeeded" in logs or "Succeeded" in logs, logs
    assert "bus ok:" in logs and "operator leader:" in logs, logs


@dataclass
class LeaseWatch:
    """The Lease's holder, sampled every half second on a thread."""

    cluster: Cluster
    namespace: str
    samples: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), lease_holder(self.cluster, self.namespace)))
            self.stop.wait(0.5)

    def leaderless_spans(self, live: set[str]) -> list[float]:
        """Spans with no holder, or one whose pod was gone (``live``: pods that existed then)."""
        spans, since = [], None
        for at, holder in self.samples:
            if not holder or holder not in live:
                since = at if since is None else since
            elif since is not None:
                spans.append(at - since)
                since = None
        return spans


def changed_chart(tmp: Path) -> Path:
    """The chart with a changed CRD (a new description), as the next release would ship it."""
    copy = tmp / "intent-fleet"
    shutil.copytree(CHART, copy)
    path = copy / "files" / f"{CRD_NAME}.yaml"
    crd = yaml.safe_load(path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] = "An IntentWorker (upgraded by the chart test)."
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return copy


def test_helm_upgrade_rolls_the_operator_hands_the_lease_over_and_updates_the_crd(
    node_cluster: Cluster, installed: Installed, tmp_path: Path
) -> None:
    fleet, team = installed.release.namespace, installed.team
    before = {p["metadata"]["name"] for p in operator_pods(node_cluster, fleet)}
    watch = LeaseWatch(node_cluster, fleet)
    sampler = threading.Thread(target=watch.run, daemon=True)
    seen: set[str] = set(before)

    def live_pods() -> None:
        while not watch.stop.is_set():
            seen.update(p["metadata"]["name"] for p in operator_pods(node_cluster, fleet))
            watch.stop.wait(0.5)

    pods_thread = threading.Thread(target=live_pods, daemon=True)
    sampler.start()
    pods_thread.start()
    try:
        installed.release.install(
            {"operator": {"watchNamespaces": [team], "logLevel": "debug"}},
            chart=changed_chart(tmp_path),
        )
        wait_until(
            lambda: (
                {p["metadata"]["name"] for p in operator_pods(node_cluster, fleet)}.isdisjoint(
                    before
                )
                # The sampler's own latest view, so the new leader is in its record.
                and bool(watch.samples)
                and watch.samples[-1][1] not in (before | {""})
            ),
            120,
            "new operator pods, one of them leading",
        )
    finally:
        watch.stop.set()
        sampler.join(timeout=5)
        pods_thread.join(timeout=5)
    after = operator_pods(node_cluster, fleet)
    for pod in after:
        assert "--log-level=debug" in pod["spec"]["containers"][0]["args"]
    crd = node_cluster.get("crd", CRD_NAME)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["description"] == "An IntentWorker (upgraded by the chart test)."
    holders = [h for _, h in watch.samples if h]
    assert len(set(holders)) >= 2, f"the lease never moved: {sorted(before)} {watch.samples}"
    spans = watch.leaderless_spans(seen)
    longest = max(spans, default=0.0)
    print(
        f"\nupgrade: {len(set(holders))} leaders in turn; longest leaderless span {longest:.1f} s"
    )
    # Shorter than the Lease: every leader that went handed the Lease back on SIGTERM; none of
    # the followers had to wait for it to expire.
    assert longest < LeaderSettings().lease_seconds, spans


def test_helm_uninstall_keeps_the_crd_and_the_bus_data(
    node_cluster: Cluster, installed: Installed
) -> None:
    release, team = installed.release, installed.team
    assert installed.published, "needs the intents of the walk-through"
    release.uninstall()
    fleet = release.namespace
    assert node_cluster.get("deployment", "intent-fleet-operator", "-n", fleet) is None
    assert node_cluster.get("statefulset", BUS_NAME, "-n", fleet) is None
    assert node_cluster.get("crd", CRD_NAME) is not None
    name = readme_worker()["metadata"]["name"]
    assert node_cluster.get("intentworker", name, "-n", team) is not None
    assert node_cluster.get("pvc", f"data-{BUS_NAME}-0", "-n", fleet)["status"]["phase"] == "Bound"
    # A reinstall finds the claim, and in it every key and intent, through a port-forward this
    # time (the way to reach it from outside any cluster).
    release.install({"operator": {"watchNamespaces": [team]}})
    with node_cluster.service_url(fleet, BUS_NAME, BUS_PORT, forward=True) as url:
        done = asyncio.run(count_fulfilled(url, installed.key, installed.published))
    assert done == COUNT
