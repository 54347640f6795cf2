"""Benchmark the whole product on the local node: install times, cold starts, a 200-intent run.

Uses the harness's node (hack/cluster; brought up if none runs, and then taken down again), the
chart from charts/intent-fleet with the images `make cluster-images` built, and the Python
example handler. Everything runs in namespaces of its own, removed at the end. Prints a table,
then one JSON line.

    .venv/bin/python bench/cluster.py
    .venv/bin/python bench/cluster.py --installs 3 --cold-starts 5 --intents 200
    .venv/bin/python bench/cluster.py --quick     # one install, two cold starts, 40 intents

1. Install: `helm install --wait` into a fresh namespace, timed to an operator replica holding
   the leader Lease, and to the first IntentWorker reporting Ready (its Deployment at zero).
2. Cold start: with the worker at zero pods, one intent is published from the host through the
   bus Service; timed from the publish to the bus's completion time of that intent (the bus
   runs on this host's clock). Then the worker goes back to zero (cooldown 3 s) for the next.
3. Throughput: ``--intents`` intents of 0.2 s work each with maxReplicas 4 and one intent per
   replica wanted, so four pods work them off; timed from the publish to the last completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "cluster"))

from tests.support.cluster import Cluster, ClusterManager

from fleetcluster import demo
from fleetcluster.release import BUS_PORT, Release
from intent_fleet.protocol import BusClient, ClientSettings

WORK_SECONDS = 0.2


def release_in(cluster: Cluster, tag: str) -> tuple[Release, demo.DemoSettings]:
    fleet = cluster.namespace(f"bench-fleet-{tag}")
    team = cluster.namespace(f"bench-team-{tag}")
    settings = demo.DemoSettings(
        release="intent-fleet",
        namespace=fleet,
        team=team,
        worker="bench",
        goal="bench.cluster",
        cooldown_seconds=3,
    )
    return cluster.release(settings.release, fleet), settings


def install(release: Release, settings: demo.DemoSettings) -> tuple[float, float, str]:
    """Seconds to a leading operator and to a Ready first IntentWorker; the tenant key."""
    started = time.monotonic()
    release.install({"operator": {"watchNamespaces": [settings.team]}})
    demo.poll(lambda: demo.lease_held(release), "an operator replica to lead", 120)
    leading = time.monotonic() - started
    key = release.tenant_key(settings.team)
    release.key_secret(settings.team, key)
    release.kubectl("apply", "-f", "-", stdin=json.dumps(demo.worker(release, settings)))
    demo.poll(lambda: demo.worker_ready(release, settings), "the IntentWorker to be Ready", 120)
    return leading, time.monotonic() - started, key


def at_zero(release: Release, settings: demo.DemoSettings) -> bool:
    pods = release.kubectl(
        "get",
        "pods",
        "-l",
        f"intentbus.io/worker={settings.worker}",
        "-n",
        settings.team,
        "-o",
        "name",
    ).stdout.split()
    return demo.replicas(release, settings) == (0, 0) and not pods


async def timed_run(url: str, key: str, goal: str, count: int, timeout: float) -> float:
    """Seconds from publishing ``count`` intents to the last one's completion on the bus."""
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        published_at = time.time()
        receipts = await asyncio.gather(
            *(client.publish(goal, {"name": f"#{n}", "sleep": WORK_SECONDS}) for n in range(count))
        )
        deadline = time.monotonic() + timeout
        while True:
            statuses = await asyncio.gather(*(client.status(r.id) for r in receipts))
            done = [s.completed_at for s in statuses if s.status == "fulfilled" and s.completed_at]
            if len(done) == count:
                return max(done) - published_at
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)} of {count} intents fulfilled after {timeout} s")
            await asyncio.sleep(0.1)


def cold_starts(
    release: Release, settings: demo.DemoSettings, key: str, url: str, runs: int
) -> list[float]:
    seconds = []
    for _ in range(runs):
        demo.poll(lambda: at_zero(release, settings), "the worker at zero pods", 180)
        seconds.append(asyncio.run(timed_run(url, key, settings.goal, 1, 120)))
        print(f"  cold start {len(seconds)}: {seconds[-1]:.2f} s", flush=True)
    return seconds


def throughput(
    release: Release, settings: demo.DemoSettings, key: str, url: str, intents: int
) -> float:
    busy = replace(settings, target_per_replica=1, max_replicas=4)
    release.kubectl("apply", "-f", "-", stdin=json.dumps(demo.worker(release, busy)))
    demo.poll(lambda: at_zero(release, settings), "the worker at zero pods", 180)
    return asyncio.run(timed_run(url, key, settings.goal, intents, 600))


def cleanup(cluster: Cluster, release: Release, settings: demo.DemoSettings) -> None:
    try:
        release.remove([settings.team])
    finally:
        cluster.kubectl("delete", "namespace", settings.team, settings.namespace, check=False)
        cluster.namespaces = [
            n for n in cluster.namespaces if n not in (settings.team, settings.namespace)
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--installs", type=int, default=3, help="fresh installs timed")
    parser.add_argument("--cold-starts", type=int, default=5, help="wake-ups from zero timed")
    parser.add_argument("--intents", type=int, default=200, help="intents of the throughput run")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (the suite's)")
    args = parser.parse_args()
    if args.quick:
        args.installs, args.cold_starts, args.intents = 1, 2, 40
    if not (1 <= args.installs <= 10 and 1 <= args.cold_starts <= 20 and 1 <= args.intents <= 2000):
        parser.error("need 1-10 installs, 1-20 cold starts and 1-2000 intents")
    manager = ClusterManager()
    if manager.external is not None:
        parser.error("runs on the harness's node (it reaches the bus Service from this host)")
    cluster = manager.get("node")
    leading: list[float] = []
    first_ready: list[float] = []
    cold: list[float] = []
    run_seconds = 0.0
    try:
        for n in range(args.installs):
            release, settings = release_in(cluster, str(n))
            try:
                lead, ready, key = install(release, settings)
                leading.append(lead)
                first_ready.append(ready)
                print(f"install {n + 1}: leading {lead:.1f} s, first worker Ready {ready:.1f} s")
                if n == args.installs - 1:
                    url = f"http://{release.bus_cluster_ip()}:{BUS_PORT}"
                    cold = cold_starts(release, settings, key, url, args.cold_starts)
                    run_seconds = throughput(release, settings, key, url, args.intents)
            finally:
                cleanup(cluster, release, settings)
    finally:
        if leading:
            release.restore_crd()
        manager.finish(keep_logs=Path("/tmp/intent-fleet-bench-cluster-logs"))
    medians = {
        "install_to_leading_s": statistics.median(leading),
        "install_to_first_worker_ready_s": statistics.median(first_ready),
        "cold_start_p50_s": statistics.median(cold),
        "cold_start_max_s": max(cold),
        f"intents_{args.intents}_with_4_replicas_s": run_seconds,
        "intents_per_s": args.intents / run_seconds,
    }
    print()
    for name, value in medians.items():
        print(f"{name:<36} {value:8.2f}")
    print(json.dumps({"bench": "cluster", "medians": medians, "cold_starts_s": cold}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
