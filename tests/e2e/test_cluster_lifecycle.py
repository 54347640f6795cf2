"""The harness's own lifecycle, through the README's make targets, on a second cluster.

It runs beside the session's cluster (own state directory, ports shifted), so it proves `up`
is idempotent, heals a killed component and that `down` leaves nothing of its own behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.cluster import REPO, ClusterManager

OFFSET = "300"


def make(target: str, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "INTENT_FLEET_CLUSTER_DIR": str(state),
        "INTENT_FLEET_CLUSTER_PORT_OFFSET": OFFSET,
    }
    env.pop("KUBECONFIG", None)
    done = subprocess.run(
        ["make", "--no-print-directory", target, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout}\n{done.stderr}"
    return done


def recorded_pids(state: Path) -> dict[str, int]:
    return {
        pid_file.stem: int(pid_file.read_text().split()[0])
        for pid_file in (state / "run").glob("*.pid")
    }


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_is_idempotent_heals_and_down_cleans(
    tmp_path: Path, cluster_manager: ClusterManager
) -> None:
    if cluster_manager.external is not None:
        pytest.skip("the harness lifecycle is only exercised when the suite owns the cluster")
    state = tmp_path / "state"
    first = make("cluster-up", state, "PROFILE=control-plane")
    assert (
        first.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={state / 'admin.kubeconfig'}"
    )
    pids = recorded_pids(state)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}

    again = make("cluster-up", state, "PROFILE=control-plane")
    assert "kube-apiserver: running" in again.stderr
    assert recorded_pids(state) == pids

    os.kill(pids["kube-apiserver"], signal.SIGKILL)
    healed = make("cluster-up", state, "PROFILE=control-plane")
    assert "kube-apiserver: started" in healed.stderr
    assert recorded_pids(state)["kube-apiserver"] != pids["kube-apiserver"]
    kubectl = cluster_manager.settings.k8s_bin / "kubectl"
    namespaces = subprocess.run(
        [str(kubectl), f"--kubeconfig={state / 'admin.kubeconfig'}", "get", "namespaces"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "kube-system" in namespaces.stdout

    final = recorded_pids(state)
    make("cluster-down", state)
    assert not state.exists()
    assert not any(alive(pid) for pid in final.values())
