"""`make cluster-demo`, the README's first Kubernetes command, run as a newcomer runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fleetcluster.demo import DemoSettings
from tests.support.cluster import REPO, Cluster


@pytest.fixture
def demo_cluster(node_cluster: Cluster) -> Iterator[Cluster]:
    if node_cluster.external:
        pytest.skip("the demo brings up the harness's own node")
    demo = DemoSettings()
    yield node_cluster
    release = node_cluster.release(demo.release, demo.namespace)
    release.remove([demo.team])
    release.restore_crd()
    node_cluster.kubectl("delete", "namespace", demo.team, demo.namespace, check=False)


def test_make_cluster_demo_runs_to_zero_and_prints_its_times(demo_cluster: Cluster) -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "cluster-demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    intents = DemoSettings().intents
    assert any(f"done {intents}/{intents}" in line for line in lines), done.stdout[-3000:]
    marks = json.loads(lines[-1])["demo"]
    assert set(marks) == {
        "node up",
        "helm install to operator ready (leading)",
        "helm install to first IntentWorker ready",
        "publish to first fulfilment, from zero replicas",
        f"all {intents} intents fulfilled",
        "back at zero replicas",
    }
    assert all(seconds > 0 for seconds in marks.values()), marks
    assert "make cluster-down" in done.stdout
    # The fleet really is at zero, and the worker says so.
    worker = demo_cluster.get("intentworker", DemoSettings().worker, "-n", DemoSettings().team)
    assert worker["status"]["replicas"] == 0


def test_the_cluster_benchmark_prints_its_figures(node_cluster: Cluster) -> None:
    if node_cluster.external:
        pytest.skip("the benchmark reaches the bus Service from this host, on the harness's node")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cluster.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    medians = report["medians"]
    assert report["bench"] == "cluster" and len(report["cold_starts_s"]) == 2
    for name in (
        "install_to_leading_s",
        "install_to_first_worker_ready_s",
        "cold_start_p50_s",
        "intents_40_with_4_replicas_s",
    ):
        assert medians[name] > 0, medians
    # It cleans up after itself: its namespaces are gone or going.
    namespaces = node_cluster.get("namespaces")["items"]
    left = [
        n["metadata"]["name"]
        for n in namespaces
        if n["metadata"]["name"].startswith(("bench-fleet-", "bench-team-"))
        and n["status"]["phase"] != "Terminating"
    ]
    assert not left, left
