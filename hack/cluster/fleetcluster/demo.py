"""`make cluster-demo`: the whole product on the local node, the way a newcomer meets it.

The node comes up, the chart is installed (operator and bus from their images), a tenant key
and its Secret are made as NOTES.txt says, an IntentWorker runs the Python example handler, and
intents published from this host through the bus Service wake it from zero. A live line shows
the backlog, the IntentWorker's desired and running replicas and the intents done until the
fleet is back at zero; the end prints the measured times and how to clean up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from fleetcluster.errors import ClusterError
from fleetcluster.release import BUS_PORT, Release
from fleetcluster.settings import ClusterSettings
from intent_fleet import __version__
from intent_fleet.protocol import BusClient, ClientSettings


@dataclass(frozen=True)
class DemoSettings:
    """What the demo installs and sends (defaults: the README's walk-through)."""

    #: Helm release and the namespace it goes into.
    release: str = "intent-fleet"
    namespace: str = "intent-fleet"
    #: The tenant's namespace, where the IntentWorker and its pods run.
    team: str = "demo"
    worker: str = "hello"
    goal: str = "demo.hello"
    #: Intents published at once, and how long the handler works on each (seconds).
    intents: int = 200
    work_seconds: float = 0.2
    max_replicas: int = 4
    #: Backlog per replica the autoscaler aims at: intents / this = the replicas wanted.
    target_per_replica: int = 10
    #: Quiet seconds before the fleet goes back to zero.
    cooldown_seconds: int = 10
    #: The whole run may take this long before the demo gives up (seconds).
    timeout: float = 600.0


@dataclass
class Snapshot:
    """One reading of the fleet: the bus's view of the goal and the IntentWorker's replicas."""

    backlog: int = 0
    in_flight: int = 0
    dead: int = 0
    desired: int = 0
    running: int = 0

    def line(self, done: int, total: int, elapsed: float) -> str:
        return (
            f"{elapsed:6.1f} s  backlog {self.backlog:4d}  in flight {self.in_flight:3d}  "
            f"replicas desired {self.desired} running {self.running}  done {done}/{total}"
            + (f"  dead {self.dead}" if self.dead else "")
        )


@dataclass
class Timings:
    """Seconds, measured on this host's clock (the bus runs on it too)."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, seconds: float) -> None:
        self.marks[name] = seconds
        say(f"{name}: {seconds:.1f} s")


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def namespace_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def worker(release: Release, demo: DemoSettings) -> dict[str, Any]:
    return release.worker(
        demo.team,
        demo.worker,
        demo.goal,
        f"localhost/intent-fleet/handler-python:{__version__}",
        minReplicas=0,
        maxReplicas=demo.max_replicas,
        targetPerReplica=demo.target_per_replica,
        pollingIntervalSeconds=1,
        cooldownSeconds=demo.cooldown_seconds,
        scaleDown={"stabilizationWindowSeconds": 0},
    )


def worker_ready(release: Release, demo: DemoSettings) -> bool:
    found = release.kubectl(
        "get", "intentworker", demo.worker, "-n", demo.team, "-o", "json"
    ).stdout
    conditions = json.loads(found).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease_held(release: Release) -> bool:
    done = release.kubectl(
        "get", "lease", "intent-fleet-operator", "-n", release.namespace, "-o", "json"
    )
    return bool((json.loads(done.stdout).get("spec") or {}).get("holderIdentity"))


def poll(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def replicas(release: Release, demo: DemoSettings) -> tuple[int, int]:
    """The IntentWorker's own desired and running replicas, as `kubectl get` shows them.

    Read from its status rather than the Deployment's, so "back at zero" means the worker
    says so too: its status trails the Deployment by up to one operator tick.
    """
    found = json.loads(
        release.kubectl("get", "intentworker", demo.worker, "-n", demo.team, "-o", "json").stdout
    )
    status = found.get("status") or {}
    desired = int(status.get("desiredReplicas") or 0)
    return desired, int(status.get("replicas") or 0)


async def snapshot(client: BusClient, release: Release, demo: DemoSettings) -> Snapshot:
    stats = await client.stats(goal=demo.goal)
    desired, running = await asyncio.to_thread(replicas, release, demo)
    view = Snapshot(desired=desired, running=running)
    for goal in stats.goals:
        view.backlog += goal.ready + goal.delayed
        view.in_flight += goal.claimed
        view.dead += goal.dead
    return view


async def run_intents(release: Release, demo: DemoSettings, key: str, timings: Timings) -> None:
    url = f"http://{release.bus_cluster_ip()}:{BUS_PORT}"
    say(f"publishing {demo.intents} intents to {demo.goal} through the bus Service ({url})")
    live = sys.stdout.isatty()
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        published_at = time.time()
        started = time.monotonic()
        receipts = await asyncio.gather(
            *(
                client.publish(demo.goal, {"name": f"#{n}", "sleep": demo.work_seconds})
                for n in range(demo.intents)
            )
        )
        ids = [r.id for r in receipts]
        printed = 0.0
        at_zero = False
        while not at_zero:
            elapsed = time.monotonic() - started
            if elapsed > demo.timeout:
                raise ClusterError(f"the fleet was not back at zero after {demo.timeout:.0f} s")
            view = await snapshot(client, release, demo)
            done = demo.intents - view.backlog - view.in_flight - view.dead
            at_zero = done + view.dead == demo.intents and view.desired == view.running == 0
            if live:
                print("\r" + view.line(done, demo.intents, elapsed), end="", flush=True)
            elif elapsed - printed >= 2 or at_zero:
                print(view.line(done, demo.intents, elapsed), flush=True)
                printed = elapsed
            await asyncio.sleep(0.5)
        if live:
            print()
        back_at_zero = time.monotonic() - started
        statuses = await asyncio.gather(*(client.status(i) for i in ids))
    fulfilled = [s.completed_at for s in statuses if s.status == "fulfilled" and s.completed_at]
    if len(fulfilled) != demo.intents:
        raise ClusterError(f"{len(fulfilled)} of {demo.intents} intents fulfilled")
    timings.mark("publish to first fulfilment, from zero replicas", min(fulfilled) - published_at)
    timings.mark(f"all {demo.intents} intents fulfilled", max(fulfilled) - published_at)
    timings.mark("back at zero replicas", back_at_zero)


def run(settings: ClusterSettings, demo: DemoSettings, up_seconds: float) -> Timings:
    """Everything after `up`: install, the first worker, the intents. Returns the timings."""
    timings = Timings()
    timings.mark("node up", up_seconds)
    release = Release(
        demo.release,
        demo.namespace,
        settings.admin_kubeconfig,
        settings.helm_bin / "helm",
        settings.k8s_bin / "kubectl",
    )
    started = time.monotonic()
    say(f"helm install {demo.release} charts/intent-fleet -n {demo.namespace}")
    release.install()
    poll(lambda: lease_held(release), "an operator replica to lead", 120)
    timings.mark("helm install to operator ready (leading)", time.monotonic() - started)
    release.kubectl("apply", "-f", "-", stdin=json.dumps(namespace_doc(demo.team)))
    say(f"a tenant key for {demo.team}, its Secret, and IntentWorker {demo.worker}")
    key = release.tenant_key(demo.team)
    release.key_secret(demo.team, key)
    release.kubectl("apply", "-f", "-", stdin=json.dumps(worker(release, demo)))
    poll(lambda: worker_ready(release, demo), f"IntentWorker {demo.worker} to be Ready", 120)
    timings.mark("helm install to first IntentWorker ready", time.monotonic() - started)
    asyncio.run(run_intents(release, demo, key, timings))
    say(
        "clean up: `make cluster-down` stops the node and removes everything; or keep it and "
        f"`helm uninstall {demo.release} -n {demo.namespace}` "
        f"(export KUBECONFIG={settings.admin_kubeconfig})"
    )
    return timings
