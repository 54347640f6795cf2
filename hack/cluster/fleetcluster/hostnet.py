"""Host changes the node profile makes, and their exact undo: bridge, firewall, forwarding,
mounts, network namespaces and cgroups. Each undo touches only what carries our names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from fleetcluster.errors import HostSetupError

FIREWALL_TAG = "intent-fleet-cluster"
FORWARD_SYSCTL = Path("/proc/sys/net/ipv4/ip_forward")
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as missing:
        raise HostSetupError(
            f"{argv[0]} is not installed (make cluster-deps installs it)"
        ) from missing
    if check and done.returncode != 0:
        raise HostSetupError(
            f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done


def ensure_bridge(name: str, address: str, prefix: int) -> None:
    """Create the pod bridge holding the gateway address, so the node has an address at once."""
    if _run("ip", "link", "show", name, check=False).returncode != 0:
        _run("ip", "link", "add", name, "type", "bridge")
    shown = _run("ip", "-o", "addr", "show", "dev", name).stdout
    if f" {address}/" not in shown:
        _run("ip", "addr", "add", f"{address}/{prefix}", "dev", name)
    _run("ip", "link", "set", name, "up")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def remove_bridge(name: str) -> None:
    if link_exists(name):
        _run("ip", "link", "delete", name)


def _firewall_rules(pod_subnet: str) -> list[list[str]]:
    """Pods talk to each other and to this host; nothing of theirs is forwarded anywhere else."""
    tag = ["-m", "comment", "--comment", FIREWALL_TAG]
    return [
        ["-s", pod_subnet, "-d", pod_subnet, *tag, "-j", "ACCEPT"],
        ["-s", pod_subnet, *tag, "-j", "REJECT"],
        ["-d", pod_subnet, *tag, "-j", "REJECT"],
    ]


def ensure_firewall(pod_subnet: str) -> None:
    for position, rule in enumerate(_firewall_rules(pod_subnet), start=1):
        if _run("iptables", "-w", "-C", "FORWARD", *rule, check=False).returncode != 0:
            _run("iptables", "-w", "-I", "FORWARD", str(position), *rule)


def remove_firewall(pod_subnet: str) -> None:
    for rule in _firewall_rules(pod_subnet):
        while _run("iptables", "-w", "-C", "FORWARD", *rule, check=False).returncode == 0:
            _run("iptables", "-w", "-D", "FORWARD", *rule)


def firewall_rules_present(pod_subnet: str) -> bool:
    """True if any of our FORWARD rules is installed."""
    if shutil.which("iptables") is None:
        return False
    rules = _firewall_rules(pod_subnet)
    return any(
        _run("iptables", "-w", "-C", "FORWARD", *r, check=False).returncode == 0 for r in rules
    )


def save_forwarding(record: Path) -> None:
    """Remember ip_forward as it was before the bridge plugin turns it on."""
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(FORWARD_SYSCTL.read_text())


def restore_forwarding(record: Path) -> None:
    if record.exists():
        FORWARD_SYSCTL.write_text(record.read_text())
        record.unlink()


BRIDGE_NF_SYSCTL = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def ensure_bridge_netfilter(record: Path) -> None:
    """Bridged traffic through iptables (kube-proxy's Service rules), remembering how it was."""
    if not BRIDGE_NF_SYSCTL.exists():
        raise HostSetupError(
            f"{BRIDGE_NF_SYSCTL} is missing: this kernel has no br_netfilter, which kube-proxy "
            "needs for pod-to-Service traffic on one bridge"
        )
    if not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(BRIDGE_NF_SYSCTL.read_text())
    if BRIDGE_NF_SYSCTL.read_text().strip() != "1":
        BRIDGE_NF_SYSCTL.write_text("1")


def restore_bridge_netfilter(record: Path) -> None:
    if record.exists():
        BRIDGE_NF_SYSCTL.write_text(record.read_text())
        record.unlink()


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them in)."""
    found: list[Path] = []
    prefix = str(root).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_all(root: Path) -> list[Path]:
    """Unmount everything below ``root``; lazily if a mount is still busy."""
    undone = mounts_under(root)
    for point in undone:
        if _run("umount", str(point), check=False).returncode != 0:
            _run("umount", "-l", str(point), check=False)
    return undone


def remove_netns(paths: list[Path]) -> None:
    """Unmount and remove network namespaces left behind by sandboxes that died uncleanly."""
    for path in paths:
        if path.parent != NETNS_DIR:
            continue
        _run("umount", str(path), check=False)
        path.unlink(missing_ok=True)


def cgroup_trees(top: str = "kubepods") -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [h / top for h in CGROUP_ROOT.iterdir() if (h / top).is_dir()]


def remove_cgroups(top: str = "kubepods") -> list[Path]:
    """rmdir the kubelet's cgroup trees (``top`` in every hierarchy), leaves first."""
    removed: list[Path] = []
    if not CGROUP_ROOT.is_dir():
        return removed
    for hierarchy in CGROUP_ROOT.iterdir():
        tree = hierarchy / top
        if not tree.is_dir() or tree.is_symlink():
            continue
        dirs = sorted(
            (Path(d) for d, _, _ in os.walk(tree)), key=lambda p: len(p.parts), reverse=True
        )
        for directory in dirs:
            try:
                directory.rmdir()
                removed.append(directory)
            except OSError:
                pass
    return removed


def remove_links_into(directory: Path, target_root: Path) -> None:
    """Remove symlinks in ``directory`` (e.g. /var/log/containers) that point into our state."""
    if not directory.is_dir():
        return
    for link in directory.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(str(target_root)):
            link.unlink()


# Paths containerd's shims and the kubelet use whatever their configuration says.
FIXED_RUNTIME_DIRS = (
    Path("/run/containerd/s"),
    Path("/run/containerd/fifo"),
    Path("/run/containerd/runc/k8s.io"),
    Path("/run/containerd/runc"),
    Path("/run/containerd"),
    Path("/var/log/containers"),
)


def remove_empty_runtime_dirs() -> None:
    """rmdir the fixed runtime directories once they are empty (never anything with content)."""
    for directory in FIXED_RUNTIME_DIRS:
        with contextlib.suppress(OSError):
            directory.rmdir()


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise HostSetupError(
            f"missing host tools: {', '.join(missing)} (run `make cluster-deps` as root)"
        )


# Chains the kubelet creates at start (kubelet_network_linux.go) and never removes.
KUBELET_CHAINS = {
    "filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-KUBELET-CANARY",),
    "mangle": ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"),
}


def kube_chains() -> list[str]:
    """Chains named KUBE-* in the host's iptables (the kubelet's and kube-proxy's)."""
    found: list[str] = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool) is None:
            continue
        table = ""
        for line in _run(tool, check=False).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                found.append(f"{tool.split('-')[0]} {table} {line[1:].split()[0]}")
    return found


def remove_kubelet_chains() -> None:
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for builtin in ("INPUT", "OUTPUT"):
            jump = (builtin, "-j", "KUBE-FIREWALL")
            while _run(tool, "-w", "-C", *jump, check=False).returncode == 0:
                _run(tool, "-w", "-D", *jump, check=False)
        for table, chains in KUBELET_CHAINS.items():
            for chain in chains:
                if _run(tool, "-w", "-t", table, "-L", chain, "-n", check=False).returncode == 0:
                    _run(tool, "-w", "-t", table, "-F", chain, check=False)
                    _run(tool, "-w", "-t", table, "-X", chain, check=False)
