"""Just enough kubectl to wait for the cluster to be usable."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from fleetcluster.errors import ComponentFailedError
from fleetcluster.settings import ClusterSettings


class Kubectl:
    def __init__(self, settings: ClusterSettings) -> None:
        self.binary = str(settings.k8s_bin / "kubectl")
        self.kubeconfig = str(settings.admin_kubeconfig)

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ComponentFailedError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def get_json(self, *args: str) -> Any:
        done = self.run("get", *args, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def wait_for(self, what: str, check: Callable[[Kubectl], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self):
                return
            time.sleep(0.5)
        raise ComponentFailedError(f"timed out after {timeout:.0f} s waiting for {what}")


def default_service_account(kubectl: Kubectl) -> bool:
    """Pods in `default` can be created once the token controller made this account."""
    return kubectl.get_json("serviceaccount", "default", "-n", "default") is not None


def node_ready(name: str) -> Callable[[Kubectl], bool]:
    def check(kubectl: Kubectl) -> bool:
        node = kubectl.get_json("node", name)
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    return check
