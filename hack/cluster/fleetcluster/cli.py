"""`cluster.py up|down|status`: the harness's only entry point (the Makefile and tests call it).

`up` is idempotent: components already running are probed, not restarted, and a `control-plane`
cluster grows into a `node` one. Its last line of output is `export KUBECONFIG=<path>`.
`down` stops every process it recorded by PID, removes pods' mounts, network namespaces,
cgroups, the bridge and the firewall rules, keeps the logs and deletes the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fleetcluster import addons, controlplane, demo, hostnet, node
from fleetcluster.errors import ClusterError
from fleetcluster.kubectl import Kubectl, default_service_account, node_ready
from fleetcluster.procs import Supervisor
from fleetcluster.settings import HARNESS_DIR, ClusterSettings

PROFILES = ("control-plane", "node")
# Stop order: the node first (its pods need the apiserver to be torn down cleanly).
STOP_ORDER = (
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "apiserver-forward",
    "containerd",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
)


def say(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(settings: ClusterSettings) -> Iterator[None]:
    """One `up` or `down` at a time per state directory."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def supervisor(settings: ClusterSettings) -> Supervisor:
    return Supervisor(settings.run_dir, settings.log_dir, settings.ready_timeout)


def up(settings: ClusterSettings, profile: str) -> None:
    started = time.monotonic()
    sup = supervisor(settings)
    creds = controlplane.issue_credentials(settings)
    kubectl = Kubectl(settings)
    for component in (
        controlplane.etcd(settings),
        controlplane.apiserver(settings, creds),
        controlplane.controller_manager(settings, creds),
    ):
        say(f"{component.name}: {sup.start(component)}")
    if profile == "node" or recorded_profile(settings) == "node":
        profile = "node"
        up_node(settings, creds, sup, kubectl)
    kubectl.wait_for("the default service account", default_service_account, settings.ready_timeout)
    settings.profile_file.write_text(profile + "\n")
    say(f"{profile} profile ready in {time.monotonic() - started:.1f} s")
    print(f"export KUBECONFIG={settings.admin_kubeconfig}")


def recorded_profile(settings: ClusterSettings) -> str | None:
    """The profile a previous `up` reached; `up` never shrinks a running cluster."""
    try:
        return settings.profile_file.read_text().strip()
    except OSError:
        return None


def up_node(
    settings: ClusterSettings,
    creds: controlplane.Credentials,
    sup: Supervisor,
    kubectl: Kubectl,
) -> None:
    hostnet.require_tools("ip", "iptables", "ctr", "containerd", "runc", "buildah", "socat")
    if not (node.CNI_BIN_DIR / "bridge").exists():
        raise ClusterError(f"CNI plugins missing from {node.CNI_BIN_DIR}; run `make cluster-deps`")
    if recorded_profile(settings) != "node" and hostnet.link_exists(settings.bridge):
        raise ClusterError(
            f"bridge {settings.bridge} exists: another node-profile cluster runs on this host "
            "(one node per host; use the control-plane profile beside it)"
        )
    # Recorded before the host is touched, so a `down` after a failed `up` still cleans it.
    settings.profile_file.write_text("node\n")
    say(f"kube-scheduler: {sup.start(controlplane.scheduler(settings, creds))}")
    hostnet.save_forwarding(settings.run_dir / "ip_forward.before")
    hostnet.ensure_bridge(settings.bridge, settings.node_address, node.subnet_prefix(settings))
    hostnet.ensure_firewall(settings.pod_subnet)
    say(f"apiserver-forward: {sup.start(addons.apiserver_forward(settings))}")
    node.write_cni_config(settings)
    say(f"containerd: {sup.start(node.containerd(settings))}")
    load_images(settings)
    say(f"kubelet: {sup.start(node.kubelet(settings, creds))}")
    kubectl.wait_for(f"node {settings.node_name} to be Ready", node_ready(settings.node_name), 120)
    # Pod-to-Service traffic crosses the bridge: iptables must see it for kube-proxy's rules.
    hostnet.ensure_bridge_netfilter(settings.run_dir / "bridge_nf.before")
    say(f"kube-proxy: {sup.start(addons.kube_proxy(settings, creds))}")
    addons.install(settings, kubectl)
    say("add-ons ready: CoreDNS (kube-dns), local-path-provisioner (default StorageClass)")


def load_images(settings: ClusterSettings) -> None:
    """Import the images `make cluster-images` built (pause, base, project) into containerd."""
    argv = [str(HARNESS_DIR / "images.sh"), "import", str(settings.containerd_socket)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    log = settings.log_dir / "images.log"
    with log.open("a") as out:
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ClusterError(
            f"importing images failed (build them with `make cluster-images`); see {log}:\n"
            f"{done.stderr[-2000:]}"
        )
    say("images imported")


def down(settings: ClusterSettings, keep_logs: Path | None) -> None:
    if not settings.state_dir.exists():
        say("nothing to stop")
        return
    sup = supervisor(settings)
    kubectl = Kubectl(settings)
    if sup.pid_of("kubelet") is not None and sup.pid_of("kube-apiserver") is not None:
        remove_pods(settings, sup, kubectl)
    netns = sandbox_netns(settings, sup)
    for name in STOP_ORDER:
        if sup.stop(name):
            say(f"{name}: stopped")
    kill_orphan_shims(settings)
    unmounted = hostnet.unmount_all(settings.state_dir)
    # The bridge, firewall, cgroups and kubelet chains are the host's, shared by name with any
    # other node-profile cluster: only a cluster that ran the node profile touches them.
    node = recorded_profile(settings) == "node"
    if node:
        clean_node_host(settings, netns)
    say(f"unmounted {len(unmounted)} mounts" + (", cleaned the node's host state" if node else ""))
    left = leftovers(settings, sup, node)
    if keep_logs is not None and settings.log_dir.is_dir():
        shutil.rmtree(keep_logs, ignore_errors=True)
        shutil.copytree(settings.log_dir, keep_logs)
        say(f"logs kept in {keep_logs}")
    shutil.rmtree(settings.state_dir)
    if left:
        raise ClusterError("down left things behind: " + "; ".join(left))


def clean_node_host(settings: ClusterSettings, netns: list[Path]) -> None:
    hostnet.remove_netns(netns)
    hostnet.remove_cgroups()
    hostnet.remove_links_into(Path("/var/log/containers"), settings.state_dir)
    hostnet.remove_empty_runtime_dirs()
    hostnet.remove_bridge(settings.bridge)
    hostnet.remove_firewall(settings.pod_subnet)
    hostnet.remove_kubelet_chains()
    say(addons.kube_proxy_cleanup(settings))
    hostnet.restore_forwarding(settings.run_dir / "ip_forward.before")
    hostnet.restore_bridge_netfilter(settings.run_dir / "bridge_nf.before")


def leftovers(settings: ClusterSettings, sup: Supervisor, node: bool) -> list[str]:
    """Whatever of ours is still on the host after a `down` (empty when it cleaned up)."""
    found = [f"process {name} (pid {sup.pid_of(name)})" for name in sup.names() if sup.pid_of(name)]
    found += [f"mount {point}" for point in hostnet.mounts_under(settings.state_dir)]
    if not node:
        return found
    found += [f"shim pid {pid}" for pid in shim_pids(settings)]
    if hostnet.link_exists(settings.bridge):
        found.append(f"bridge {settings.bridge}")
    if hostnet.firewall_rules_present(settings.pod_subnet):
        found.append("FORWARD rules tagged " + hostnet.FIREWALL_TAG)
    found += [f"cgroup {path}" for path in hostnet.cgroup_trees()]
    found += [f"iptables chain {chain}" for chain in hostnet.kube_chains()]
    return found


def remove_pods(settings: ClusterSettings, sup: Supervisor, kubectl: Kubectl) -> None:
    """Let the kubelet tear every pod down (CNI DEL, unmounts) while it still can."""
    sup.stop("kube-scheduler")
    sup.stop("kube-controller-manager")
    kubectl.run(
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--force",
        "--grace-period=0",
        "--wait=false",
        check=False,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and runtime_tasks(settings):
        time.sleep(0.5)


def ctr(settings: ClusterSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", f"--address={settings.containerd_socket}", "-n", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def runtime_tasks(settings: ClusterSettings) -> list[str]:
    done = ctr(settings, "tasks", "ls", "-q")
    return done.stdout.split() if done.returncode == 0 else []


def sandbox_netns(settings: ClusterSettings, sup: Supervisor) -> list[Path]:
    """Kill what the kubelet left running and collect the network namespaces it used."""
    if sup.pid_of("containerd") is None:
        return []
    for task in runtime_tasks(settings):
        ctr(settings, "tasks", "kill", "--signal", "SIGKILL", task)
    paths: list[Path] = []
    done = ctr(settings, "containers", "ls", "-q")
    for container in done.stdout.split():
        info = ctr(settings, "containers", "info", container)
        with contextlib.suppress(ValueError):
            spec = json.loads(info.stdout).get("Spec") or {}
            for ns in spec.get("linux", {}).get("namespaces", []):
                if ns.get("type") == "network" and ns.get("path"):
                    paths.append(Path(ns["path"]))
        ctr(settings, "tasks", "delete", "--force", container)
        ctr(settings, "containers", "delete", container)
    return paths


def shim_pids(settings: ClusterSettings) -> list[int]:
    """containerd shims started for our socket (they outlive containerd itself)."""
    needle = str(settings.containerd_socket).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline.split(b"\0", 1)[0] and needle in cmdline:
            pids.append(int(proc.name))
    return pids


def kill_orphan_shims(settings: ClusterSettings) -> None:
    for pid in shim_pids(settings):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def status(settings: ClusterSettings) -> int:
    sup = supervisor(settings)
    names = sup.names()
    if not names:
        print("no cluster")
        return 1
    for name in names:
        pid = sup.pid_of(name)
        print(f"{name:<24} {'pid ' + str(pid) if pid else 'not running'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    up_parser = verbs.add_parser("up", help="start (or keep) the cluster")
    up_parser.add_argument("--profile", choices=PROFILES, default="control-plane")
    down_parser = verbs.add_parser("down", help="stop everything and clean the host")
    down_parser.add_argument("--keep-logs", type=Path, default=None, help="copy logs here first")
    verbs.add_parser("status", help="list the recorded components")
    demo_parser = verbs.add_parser(
        "demo",
        help="node up, helm install, an IntentWorker, intents through it (make cluster-demo)",
    )
    demo_parser.add_argument("--intents", type=int, default=demo.DemoSettings.intents)
    args = parser.parse_args(argv)
    settings = ClusterSettings()
    try:
        if args.verb == "status":
            return status(settings)
        if args.verb == "demo":
            started = time.monotonic()
            with locked(settings):
                up(settings, "node")
            timings = demo.run(
                settings, demo.DemoSettings(intents=args.intents), time.monotonic() - started
            )
            print(json.dumps({"demo": timings.marks}))
            return 0
        with locked(settings):
            if args.verb == "up":
                up(settings, args.profile)
            else:
                down(settings, args.keep_logs)
    except ClusterError as error:
        say(f"error: {error}")
        return 1
    return 0
