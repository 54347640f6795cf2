"""Benchmark the operator: backlog-to-replicas latency, and its RSS and CPU with many IntentWorkers.

Brings up its own control-plane cluster (hack/cluster in a temporary directory, ports
shifted by 900, so no other cluster is touched; with KUBECONFIG set it uses that cluster
instead and starts none), a real ``intent-fleet bus`` and a real ``intent-fleet operator
--no-leader-election`` watching one namespace. Prints a table, then one JSON line.

    .venv/bin/python bench/autoscale.py
    .venv/bin/python bench/autoscale.py --workers 5 --rounds 3 --load-workers 50 --sample-seconds 10

1. Latency: ``--workers`` IntentWorkers polling every second. Each round publishes a burst
   to one worker's goal and times, from the first publish acknowledgement, until a watch on
   the namespace's Deployments (a streaming GET with the kubeconfig's credentials, so no
   polling of ours is measured) shows that worker's ``spec.replicas`` above zero; then it
   works the goal off (claim + fulfil) and times the way back to zero (cooldown 0 s,
   stabilisation window 0 s). Publishing and draining start at a random phase of the polling.
2. Load: IntentWorkers up to ``--load-workers`` in all, created at once; the time until
   each has its Deployment and its status; then, the fleet idle, for ``--sample-seconds``:
   the operator's RSS and CPU and the API server's and etcd's CPU (from /proc, every second),
   the API server's requests per second by verb on the resources the operator uses (from its
   own ``apiserver_request_total``), and the bus's requests per second (all of them the
   operator's then, from its ``intent_bus_responses_total``); then the latency rounds again
   under load.

    .venv/bin/python bench/autoscale.py --workers 20 --load-workers 200
    .venv/bin/python bench/autoscale.py --workers 20 --load-workers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import random
import re
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "cluster"))

from tests.support.busproc import BusProcess, start_bus
from tests.support.cluster import Cluster, ClusterManager, wait_until
from tests.support.operatorproc import OperatorProcess, start_operator

from bench.bus import pct, rss_mib
from fleetcluster.cli import supervisor
from intent_fleet.operator.backlog import Exposition, parse_exposition
from intent_fleet.protocol import AdminClient, BusClient, ClientSettings

#: Our own cluster's ports are the harness's plus this, beside any other running cluster.
PORT_OFFSET = "900"
GROUP_PATH = "/apis/intentbus.io/v1alpha1"
#: Each wait for the operator gives up after this long (seconds); keeps the run bounded.
WAIT_SECONDS = 30.0
#: Waits for the whole fleet (creation, Deployments, statuses) give up after this long.
FLEET_WAIT_SECONDS = 150.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: The resources the operator reads and writes; the API server's requests on these are its.
OPERATOR_RESOURCES = (
    "intentworkers",
    "deployments",
    "pods",
    "secrets",
    "serviceaccounts",
    "events",
)
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
#: Longest wait for an idle fleet to stop writing before it is sampled.
SETTLE_SECONDS = 180.0
#: Writes on these resources are other controllers' (the Deployment controller's status
#: updates), not the operator's: reported apart.
OTHERS_WRITES = ("PUT deployments/status",)


# --- the API server, as the admin kubeconfig reaches it ------------------------------------------


@dataclass
class Kube:
    """A few raw API calls and one watch over an aiohttp session with the kubeconfig's auth."""

    session: aiohttp.ClientSession
    server: str

    async def text(self, path: str) -> str:
        async with self.session.get(self.server + path) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.server + path, json=body) as resp:
            text = await resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]!r}")
            return orjson.loads(text)


def kube_from_view(view: dict[str, Any], tmp: Path) -> Kube:
    """A client from ``kubectl config view --raw --minify -o json`` (certs, or a token)."""
    cluster = view["clusters"][0]["cluster"]
    user = view["users"][0]["user"]

    def material(key: str) -> str | None:
        if user.get(f"{key}-data") or cluster.get(f"{key}-data"):
            data = user.get(f"{key}-data") or cluster[f"{key}-data"]
            path = tmp / f"kube-{key}.pem"
            path.write_bytes(base64.b64decode(data))
            path.chmod(0o600)
            return str(path)
        found = user.get(key) or cluster.get(key)
        return str(found) if found else None

    context: ssl.SSLContext | bool
    if cluster.get("insecure-skip-tls-verify"):
        context = False
    else:
        context = ssl.create_default_context(cafile=material("certificate-authority"))
        cert, key = material("client-certificate"), material("client-key")
        if cert and key:
            context.load_cert_chain(cert, key)
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=32), headers=headers
    )
    return Kube(session=session, server=str(cluster["server"]).rstrip("/"))


@dataclass
class DeploymentWatch:
    """Every change of each Deployment's spec.replicas, stamped when the watch delivered it."""

    kube: Kube
    namespace: str
    replicas: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    appeared: dict[str, float] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _record(self, obj: dict[str, Any], at: float) -> None:
        name = obj["metadata"]["name"]
        replicas = int(obj.get("spec", {}).get("replicas", 1))
        self.appeared.setdefault(name, at)
        if self.replicas.get(name) != replicas:
            self.replicas[name] = replicas
            self.history.setdefault(name, []).append((at, replicas))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def run(self) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        no_deadline = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:  # (re)list, then watch from the list's resourceVersion
            listing = await self.kube.call("GET", path)
            for item in listing["items"]:
                self._record(item, time.perf_counter())
            params = {
                "watch": "1",
                "resourceVersion": listing["metadata"]["resourceVersion"],
                "timeoutSeconds": "3600",
            }
            url = self.kube.server + path
            async with self.kube.session.get(url, params=params, timeout=no_deadline) as resp:
                async for line in resp.content:
                    at = time.perf_counter()
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event["type"] == "ERROR":
                        break  # 410 Gone and the like: list again
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(event["object"], at)

    async def until(self, check: Callable[[], float | None], what: str, timeout: float) -> float:
        """Wait until ``check`` (re-run at each watch event) returns a time; that time."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    found = check()
                    if found is not None:
                        return found
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} after {timeout:.0f} s") from None

    async def settled(self, name: str, replicas: int) -> None:
        """Wait until ``name`` is at ``replicas`` now."""
        await self.until(
            lambda: 0.0 if self.replicas.get(name) == replicas else None,
            f"{name} at {replicas} replicas",
            WAIT_SECONDS,
        )

    async def change(self, name: str, wanted: Callable[[int], bool], *, after: float) -> float:
        """When the watch first delivered, at or after ``after``, a wanted replicas of ``name``."""

        def check() -> float | None:
            hits = [t for t, r in self.history.get(name, []) if t >= after and wanted(r)]
            return hits[0] if hits else None

        return await self.until(check, f"replicas change of {name}", WAIT_SECONDS)


# --- the workload ---------------------------------------------------------------------------------


def intent_worker(name: str, namespace: str, *, bus_url: str, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": "intentbus.io/v1alpha1",
        "kind": "IntentWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "goal": goal_of(name),
            "bus": {"url": bus_url, "credentialsSecretRef": {"name": "bus-key"}},
            "template": {"spec": {"containers": [{"name": "handler", "image": "h:1"}]}},
            "scaling": {
                "pollingIntervalSeconds": interval,
                "targetPerReplica": 10,
                "maxReplicas": 10,
                "cooldownSeconds": 0,
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }


def goal_of(name: str) -> str:
    return f"bench.operator.{name}"


async def create_workers(
    kube: Kube, namespace: str, names: list[str], *, bus_url: str, interval: int
) -> dict[str, float]:
    """POST the IntentWorkers 16 at a time; when each creation was acknowledged."""
    sem = asyncio.Semaphore(16)
    acked: dict[str, float] = {}

    async def create(name: str) -> None:
        body = intent_worker(name, namespace, bus_url=bus_url, interval=interval)
        async with sem:
            await kube.call("POST", f"{GROUP_PATH}/namespaces/{namespace}/intentworkers", body)
        acked[name] = time.perf_counter()

    await asyncio.gather(*(create(n) for n in names))
    return acked


async def observed(kube: Kube, namespace: str) -> int:
    """IntentWorkers whose status has caught up with their generation and read a backlog."""
    listing = await kube.call("GET", f"{GROUP_PATH}/namespaces/{namespace}/intentworkers")
    return sum(
        1
        for w in listing["items"]
        if (w.get("status") or {}).get("observedGeneration") == w["metadata"]["generation"]
        and "backlog" in w["status"]
    )


async def wait_observed(kube: Kube, namespace: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await observed(kube, namespace)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {seen} of {count} IntentWorkers observed in {timeout:.0f} s"
            )
        await asyncio.sleep(0.5)


@dataclass
class Rounds:
    """Seconds from backlog to replicas > 0, and from an empty goal back to 0."""

    up: list[float] = field(default_factory=list)
    down: list[float] = field(default_factory=list)


async def scale_rounds(
    bus: BusClient, watch: DeploymentWatch, names: list[str], *, rounds: int, burst: int
) -> Rounds:
    rng = random.Random(rounds)
    out = Rounds()
    for n in range(rounds):
        name = names[n % len(names)]
        goal = goal_of(name)
        await watch.settled(name, 0)
        await asyncio.sleep(rng.uniform(0, 1))  # a random phase against the 1 s polling
        started = time.perf_counter()

        async def publish(i: int, goal: str = goal) -> float:
            await bus.publish(goal, {"n": i})
            return time.perf_counter()

        acked = min(await asyncio.gather(*(publish(i) for i in range(burst))))
        up = await watch.change(name, lambda r: r > 0, after=started)
        out.up.append(up - acked)
        await asyncio.sleep(rng.uniform(0, 1))  # drained at a random phase too
        done = 0
        for _ in range(burst):  # bounded: one batch claim normally takes them all
            claimed = (await bus.claim(goal, batch=burst)).intents
            await asyncio.gather(*(bus.fulfill(i.id, claim_token=i.claim_token) for i in claimed))
            done += len(claimed)
            if done >= burst:
                break
        emptied = time.perf_counter()
        down = await watch.change(name, lambda r: r == 0, after=up)
        out.down.append(down - emptied)
    return out


# --- the operator process -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def reconciles(operator: OperatorProcess) -> float:
    """The operator's reconcile passes so far (spec applies and autoscaling ticks)."""
    with urllib.request.urlopen(f"http://{operator.listen}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("intent_fleet_operator_reconcile_total{")
    )


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # less idle and iowait


def api_requests(page: Exposition) -> dict[str, float]:
    """The API server's requests so far on the operator's resources, by "VERB resource"."""
    found: Counter[str] = Counter()
    for s in page.samples:
        resource = s.labels.get("resource")
        if s.name == "apiserver_request_total" and resource in OPERATOR_RESOURCES:
            sub = s.labels.get("subresource")
            found[f"{s.labels.get('verb')} {resource}{'/' + sub if sub else ''}"] += s.value
    return dict(found)


def by_verb(rates: dict[str, float]) -> dict[str, float]:
    verbs: Counter[str] = Counter()
    for what, rate in rates.items():
        verbs[what.split(" ", 1)[0]] += rate
    return {verb: round(rate, 2) for verb, rate in sorted(verbs.items())}


async def settle(kube: Kube) -> float:
    """Wait (at most SETTLE_SECONDS) for the fleet to go quiet: 3 s without a write on the
    operator's resources, the Deployment controller's included (on two cores it takes a
    minute or more to write a thousand new Deployments' statuses, and each changes a
    worker's Ready condition). An operator that writes on every poll never goes quiet; it is
    sampled after the wait all the same. The seconds waited."""
    began = time.perf_counter()
    last = api_requests(parse_exposition(await kube.text("/metrics")))
    quiet = 0
    while quiet < 3 and time.perf_counter() - began < SETTLE_SECONDS:
        await asyncio.sleep(1.0)
        now = api_requests(parse_exposition(await kube.text("/metrics")))
        wrote = any(n > last.get(k, 0.0) for k, n in now.items() if k.split()[0] in WRITE_VERBS)
        quiet = 0 if wrote else quiet + 1
        last = now
    return time.perf_counter() - began


def bus_requests(bus: BusProcess) -> float:
    """Every answer the bus has given so far."""
    ask = urllib.request.Request(
        f"{bus.url}/metrics", headers={"Authorization": f"Bearer {bus.admin_secret}"}
    )
    with urllib.request.urlopen(ask, timeout=5) as got:
        page = parse_exposition(got.read().decode())
    return page.sum("intent_bus_responses_total", {}).total


@dataclass
class Usage:
    """Per-second samples: the operator's RSS, and CPU % of one core of each process watched;
    request rates over the whole sample."""

    rss_mib: list[float] = field(default_factory=list)
    cpu_pct: dict[str, list[float]] = field(default_factory=dict)
    passes_per_s: float = 0.0
    #: API server requests per second on the operator's resources, by verb.
    api_per_s: dict[str, float] = field(default_factory=dict)
    bus_per_s: float = 0.0


async def sample(world: World, kube: Kube, seconds: float) -> Usage:
    """The operator and its neighbours; "machine" is every core together."""
    operator = world.operator
    pids = {"operator": operator.proc.pid, **world.neighbours}
    readers: dict[str, Callable[[], float]] = {
        name: functools.partial(cpu_seconds, pid) for name, pid in pids.items()
    }
    readers["machine"] = machine_busy_seconds
    usage = Usage(cpu_pct={name: [] for name in readers})
    passes = await asyncio.to_thread(reconciles, operator)
    api = api_requests(parse_exposition(await kube.text("/metrics")))
    bus = await asyncio.to_thread(bus_requests, world.bus)
    began = last = time.perf_counter()
    cpu = {name: read() for name, read in readers.items()}
    while last - began < seconds:
        await asyncio.sleep(1.0)
        now, now_cpu = time.perf_counter(), {name: read() for name, read in readers.items()}
        for name, used in now_cpu.items():
            usage.cpu_pct[name].append(100 * (used - cpu[name]) / (now - last))
        usage.rss_mib.append(rss_mib(operator.proc.pid))
        last, cpu = now, now_cpu
    done = await asyncio.to_thread(reconciles, operator)
    usage.passes_per_s = (done - passes) / (last - began)
    api_done = api_requests(parse_exposition(await kube.text("/metrics")))
    usage.api_per_s = {
        verb: round((n - api.get(verb, 0.0)) / (last - began), 2)
        for verb, n in sorted(api_done.items())
        if n > api.get(verb, 0.0)
    }
    usage.bus_per_s = (await asyncio.to_thread(bus_requests, world.bus) - bus) / (last - began)
    return usage


# --- the run --------------------------------------------------------------------------------------


@dataclass
class World:
    cluster: Cluster
    namespace: str
    bus: BusProcess
    api_key: str
    operator: OperatorProcess
    tmp: Path
    #: Processes whose CPU is sampled beside the operator's (the bus, our cluster's).
    neighbours: dict[str, int]


async def measure(world: World, args: argparse.Namespace) -> dict[str, Any]:
    view = json.loads(
        world.cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
    )
    kube = kube_from_view(view, world.tmp)
    watch = DeploymentWatch(kube, world.namespace)
    watcher = asyncio.create_task(watch.run())
    bus = BusClient(settings=ClientSettings(base_url=world.bus.url), api_key=world.api_key)
    out: dict[str, Any] = {}
    try:
        names = [f"w{i:03d}" for i in range(args.load_workers)]
        latency, rest = names[: args.workers], names[args.workers :]
        url, ns = world.bus.url, world.namespace
        await create_workers(kube, ns, latency, bus_url=url, interval=1)
        await wait_observed(kube, ns, len(latency), WAIT_SECONDS)
        idle = await scale_rounds(bus, watch, latency, rounds=args.rounds, burst=args.burst)
        out["idle"] = asdict(idle)

        began = time.perf_counter()
        acked = await create_workers(kube, ns, rest, bus_url=url, interval=args.load_interval)
        out["create_s"] = time.perf_counter() - began
        await watch.until(
            lambda: (
                max(watch.appeared[n] for n in rest) if set(rest) <= set(watch.appeared) else None
            ),
            "every Deployment",
            FLEET_WAIT_SECONDS,
        )
        out["all_deployments_s"] = max(watch.appeared[n] for n in rest) - began
        per_worker = [watch.appeared[n] - acked[n] for n in rest]
        out["deployment_after_create_p50_s"] = pct(per_worker, 0.5)
        out["deployment_after_create_max_s"] = max(per_worker, default=0.0)
        await wait_observed(kube, ns, len(names), FLEET_WAIT_SECONDS)
        out["all_observed_s"] = time.perf_counter() - began
        out["settled_s"] = await settle(kube)
        usage = await sample(world, kube, args.sample_seconds)
        out["usage"] = asdict(usage)
        loaded = await scale_rounds(bus, watch, latency, rounds=args.rounds, burst=args.burst)
        out["loaded"] = asdict(loaded)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await bus.aclose()
        await kube.session.close()
    return out


async def new_key(bus: BusProcess) -> str:
    settings = ClientSettings(base_url=bus.url)
    async with AdminClient(settings=settings, admin_secret=bus.admin_secret) as admin:
        created = await admin.generate_key("bench-operator")
    assert created.api_key is not None
    return created.api_key


def log_summary(log: Path) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Operator log lines by level, and its commonest warning and error messages."""
    levels: Counter[str] = Counter()
    notable: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            levels[str(entry.get("level"))] += 1
            if entry.get("level") in ("warning", "error"):
                # Object names and numbers vary; the shape of the message is what repeats.
                shape = re.sub(r"w\d{3}|\d+(\.\d+)?", "#", str(entry.get("msg")))
                notable[f"{entry['level']}: {shape[:110]}"] += 1
    return dict(levels), notable.most_common(4)


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": pct(samples, 0.5),
        "p90": pct(samples, 0.9),
        "p99": pct(samples, 0.99),
        "max": max(samples, default=float("nan")),
    }


def report(args: argparse.Namespace, out: dict[str, Any], log: Path) -> None:
    usage = out["usage"]
    cpu = {name: statistics.median(samples) for name, samples in usage["cpu_pct"].items()}
    medians = {
        "operator_rss_mib": statistics.median(usage["rss_mib"]),
        "operator_cpu_pct_max": max(usage["cpu_pct"]["operator"]),
        "reconcile_passes_per_s": usage["passes_per_s"],
        "api_writes_per_s": sum(by_verb(usage["api_per_s"]).get(v, 0.0) for v in WRITE_VERBS),
        "operator_writes_per_s": sum(
            rate
            for what, rate in usage["api_per_s"].items()
            if what.split()[0] in WRITE_VERBS and what not in OTHERS_WRITES
        ),
        "api_requests_per_s": sum(usage["api_per_s"].values()),
        "bus_requests_per_s": usage["bus_per_s"],
        **{f"{name}_cpu_pct": value for name, value in cpu.items()},
    }
    latency = {
        f"{phase}_{way}": summary(out[phase][way])
        for phase in ("idle", "loaded")
        for way in ("up", "down")
    }
    print(
        f"operator benchmark: {args.workers} IntentWorkers polling every 1 s, "
        f"{args.rounds} round(s) of {args.burst} intents; then {args.load_workers} in all "
        f"(the others polling every {args.load_interval} s)"
    )
    for phase, label in (
        ("idle", f"{args.workers} workers"),
        ("loaded", f"{args.load_workers} workers"),
    ):
        for way, what in (("up", "backlog -> replicas > 0"), ("down", "empty -> replicas 0")):
            s = latency[f"{phase}_{way}"]
            print(
                f"  {what:24} {label:12} p50 {s['p50']:6.3f} s  p90 {s['p90']:6.3f} s  "
                f"p99 {s['p99']:6.3f} s  max {s['max']:6.3f} s  (n={len(out[phase][way])})"
            )
    print(
        f"  {args.load_workers - args.workers} IntentWorkers created in {out['create_s']:.1f} s; "
        f"all Deployments after {out['all_deployments_s']:.1f} s "
        f"(each p50 {out['deployment_after_create_p50_s']:.2f} s, "
        f"max {out['deployment_after_create_max_s']:.2f} s after its create); "
        f"all statuses after {out['all_observed_s']:.1f} s; quiet after "
        f"{out['settled_s']:.1f} s more"
    )
    print(
        f"  operator at {args.load_workers} workers ({args.sample_seconds:.0f} s, medians): "
        f"RSS {medians['operator_rss_mib']:.1f} MiB   CPU {cpu['operator']:.1f} % of a core "
        f"(max {medians['operator_cpu_pct_max']:.1f} %)   "
        f"{medians['reconcile_passes_per_s']:.1f} reconcile passes/s"
    )
    others = "   ".join(
        f"{name} {value:.0f} %" for name, value in cpu.items() if name != "operator"
    )
    print(f"  CPU % of a core alongside ({os.cpu_count()} cores): {others}")
    verbs = "   ".join(f"{verb} {rate:.1f}" for verb, rate in by_verb(usage["api_per_s"]).items())
    print(
        f"  API server requests/s on the operator's resources: {verbs or 'none'} "
        f"(writes {medians['api_writes_per_s']:.1f}/s, the operator's "
        f"{medians['operator_writes_per_s']:.1f}/s); bus requests/s "
        f"{medians['bus_requests_per_s']:.1f}"
    )
    top = sorted(usage["api_per_s"].items(), key=lambda kv: -kv[1])[:6]
    print("    busiest: " + "   ".join(f"{what} {rate:.1f}" for what, rate in top))
    levels, notable = log_summary(log)
    print(f"  operator log lines by level: {levels}")
    for message, count in notable:
        print(f"    {count:5} x {message}")
    print(json.dumps({"bench": "operator", "latency_s": latency, "medians": medians, "raw": out}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=20, help="IntentWorkers timed (1 s polls)")
    parser.add_argument("--rounds", type=int, default=5, help="bursts timed, per phase")
    parser.add_argument("--burst", type=int, default=25, help="intents per burst")
    parser.add_argument("--load-workers", type=int, default=200, help="IntentWorkers in all")
    parser.add_argument("--load-interval", type=int, default=1, help="their polling seconds")
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="leave everything running")
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (the test suite uses it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.workers, args.rounds, args.load_workers, args.sample_seconds = 3, 2, 10, 3.0
    if not 1 <= args.workers <= args.load_workers <= 1000 or not 1 <= args.rounds <= 100:
        parser.error("need 1 <= --workers <= --load-workers <= 1000 and 1 <= --rounds <= 100")
    tmp = Path(tempfile.mkdtemp(prefix="intent-bench-operator-"))
    # Read by ClusterManager (and the harness it runs) unless KUBECONFIG names a cluster.
    os.environ.setdefault("INTENT_FLEET_CLUSTER_DIR", str(tmp / "cluster"))
    os.environ.setdefault("INTENT_FLEET_CLUSTER_PORT_OFFSET", PORT_OFFSET)
    manager = ClusterManager()
    cluster: Cluster | None = None
    namespace = ""
    bus: BusProcess | None = None
    operator: OperatorProcess | None = None
    try:
        cluster = manager.get("control-plane")
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        crd = "crd/intentworkers.intentbus.io"
        wait = ("wait", "--for=condition=Established", crd, "--timeout=10s")
        # A CRD just created has no conditions yet, which `kubectl wait` calls an error.
        wait_until(lambda: cluster.kubectl(*wait, check=False).returncode == 0, 60, crd)
        namespace = cluster.namespace("bench-operator")
        bus = start_bus(tmp / "bus")
        api_key = asyncio.run(new_key(bus))
        cluster.credentials_secret(namespace, "bus-key", **{"api-key": api_key})
        operator = start_operator(
            cluster.kubeconfig,
            tmp / "operator.log",
            "--no-leader-election",
            "--namespaces",
            namespace,
        )
        neighbours = {"bus": bus.proc.pid}
        if manager.external is None:  # our own cluster: its API server and etcd too
            sup = supervisor(manager.settings)
            for name in ("kube-apiserver", "etcd"):
                if pid := sup.pid_of(name):
                    neighbours[name] = pid
        world = World(cluster, namespace, bus, api_key, operator, tmp, neighbours)
        out = asyncio.run(measure(world, args))
        if args.keep:
            report(args, out, tmp / "operator.log")
            print(f"kept: KUBECONFIG={cluster.kubeconfig}, namespace {namespace}, in {tmp}")
            print(f"  operator pid {operator.proc.pid}, bus pid {bus.proc.pid}; the cluster goes")
            print(f"  with INTENT_FLEET_CLUSTER_DIR={manager.settings.state_dir} cluster.py down")
            return 0
        release_workers(manager, cluster, namespace, operator)
        code = operator.stop(timeout=60)
        assert code == 0, f"operator exited with {code}"
        report(args, out, tmp / "operator.log")
        return 0
    except BaseException:
        if operator is not None:
            tail = operator.logs().splitlines()[-15:]
            print("operator log, last lines:", *tail, sep="\n  ", file=sys.stderr)
        raise
    finally:
        if not args.keep:
            if cluster is not None and namespace:
                release_workers(manager, cluster, namespace, operator)
            for proc in (operator, bus):
                if proc is not None:
                    proc.stop(timeout=60)
            manager.finish(keep_logs=tmp / "cluster-logs")
            shutil.rmtree(tmp, ignore_errors=True)


def release_workers(
    manager: ClusterManager, cluster: Cluster, namespace: str, operator: OperatorProcess | None
) -> None:
    """On someone else's cluster, delete our IntentWorkers while the operator can finalise them.

    Our own cluster goes away whole, finalizers and all.
    """
    if manager.external is not None and operator is not None and operator.proc.poll() is None:
        cluster.kubectl("delete", "intentworkers", "--all", "-n", namespace, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
