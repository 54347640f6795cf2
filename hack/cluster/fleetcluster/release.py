"""The chart as a user installs it: helm against any kubeconfig, and the first steps of NOTES.txt.

`make cluster-demo` and the e2e tests both go through here, so the demo does exactly what the
tests prove works.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fleetcluster.errors import ClusterError
from fleetcluster.settings import HARNESS_DIR
from intent_fleet.operator.credentials import OPT_IN_LABEL

REPO_DIR = HARNESS_DIR.parent.parent
CHART = REPO_DIR / "charts" / "intent-fleet"
CRD_NAME = "intentworkers.intentbus.io"
CRD_FILE = REPO_DIR / "crds" / f"{CRD_NAME}.yaml"
# The chart's fixed names (templates/_helpers.tpl): users type the bus's into spec.bus.url.
BUS_NAME = "intent-bus"
BUS_PORT = 8080
# Where the bus pod mounts its admin secret (a path, not a secret).
ADMIN_SECRET_FILE = "/var/run/intent-bus/admin-secret"  # noqa: S105


class ReleaseError(ClusterError):
    """helm or kubectl refused a step; the message carries its stderr."""


@dataclass(frozen=True)
class Release:
    """One release of charts/intent-fleet in one namespace of the cluster in ``kubeconfig``."""

    name: str
    namespace: str
    kubeconfig: Path
    helm_binary: Path
    kubectl_binary: Path
    chart: Path = CHART

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.helm_binary), f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            timeout,
        )

    def kubectl(
        self, *args: str, timeout: float = 120, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args],
            timeout,
            stdin,
            check,
        )

    @staticmethod
    def _run(
        argv: list[str], timeout: float, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and done.returncode != 0:
            command = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
            raise ReleaseError(f"{command} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def install(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        wait: str = "5m",
        chart: Path | None = None,
    ) -> str:
        """`helm upgrade --install --wait` with ``values`` (as a values file); returns NOTES."""
        self.adopt_crd()
        argv = ["upgrade", "--install", self.name, str(chart or self.chart)]
        argv += ["--create-namespace", "--wait", f"--timeout={wait}", "-f", "-"]
        done = self._run(
            [str(self.helm_binary), f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *argv],
            timeout=900,
            stdin=yaml.safe_dump(dict(values or {})),
        )
        return done.stdout

    def uninstall(self, *, wait: bool = True) -> None:
        self.helm("uninstall", self.name, *(["--wait"] if wait else []))

    def remove(self, worker_namespaces: list[str]) -> None:
        """Everything the release and its users made: the IntentWorkers first, while an
        operator still runs to release their finalizers, then the release, then the bus's claim
        (which `helm uninstall` keeps on purpose). Leaves the kept CRD."""
        for namespace in worker_namespaces:
            self.kubectl("delete", "intentworkers", "--all", "-n", namespace, check=False)
        listed = self.helm("list", "-q", "--filter", f"^{self.name}$").stdout.split()
        if self.name in listed:
            self.uninstall()
        self.kubectl("delete", "pvc", "--all", "-n", self.namespace, "--wait=false", check=False)

    def restore_crd(self) -> None:
        """The CRD exactly as crds/ has it (no Helm marks, no upgraded schema)."""
        self.kubectl("replace", "-f", str(CRD_FILE), check=False)

    def test(self) -> str:
        return self.helm("test", self.name, "--logs", "--timeout=3m").stdout

    def adopt_crd(self) -> None:
        """Hand a CRD applied with `kubectl apply -f crds/` to this release (the chart's README
        says the same): Helm installs over an existing object only if it carries its marks."""
        found = subprocess.run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", "get", "crd", CRD_NAME],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            return
        self.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
        self.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            CRD_NAME,
            f"meta.helm.sh/release-name={self.name}",
            f"meta.helm.sh/release-namespace={self.namespace}",
        )

    @property
    def bus_url(self) -> str:
        """The bus as pods (and IntentWorkers) name it."""
        return f"http://{BUS_NAME}.{self.namespace}:{BUS_PORT}"

    def bus_cluster_ip(self) -> str:
        service = json.loads(
            self.kubectl("get", "service", BUS_NAME, "-n", self.namespace, "-o", "json").stdout
        )
        return str(service["spec"]["clusterIP"])

    def tenant_key(self, owner: str, *, workload: str = "statefulset") -> str:
        """NOTES.txt step 1: a tenant key, made in a bus pod (the admin secret stays there);
        ``workload`` is "deployment" for bus replicas on PostgreSQL."""
        done = self.kubectl(
            "exec",
            "-n",
            self.namespace,
            f"{workload}/{BUS_NAME}",
            "--",
            "intent-fleet",
            "keys",
            "create",
            "--owner",
            owner,
            "--key-only",
            "--bus-url",
            f"http://127.0.0.1:{BUS_PORT}",
            "--admin-secret-file",
            ADMIN_SECRET_FILE,
        )
        key = done.stdout.strip()
        if not key or len(key.split()) != 1:
            raise ReleaseError(f"keys create printed {len(done.stdout)} characters, not one key")
        return key

    def key_secret(self, namespace: str, key: str, name: str = "bus-key") -> None:
        """NOTES.txt step 2: the key's Secret, labelled so the operator may use it."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {OPT_IN_LABEL: "true"},
            },
            "type": "Opaque",
            "stringData": {"api-key": key},
        }
        # Through stdin: the key never appears on a command line (ps) or in an error.
        self.kubectl("apply", "-f", "-", stdin=json.dumps(secret))

    def worker(
        self, namespace: str, name: str, goal: str, image: str, **scaling: Any
    ) -> dict[str, Any]:
        """NOTES.txt step 3: an IntentWorker with the Secret above and no bus URL, so the
        operator's default: this release's bus."""
        return {
            "apiVersion": "intentbus.io/v1alpha1",
            "kind": "IntentWorker",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "goal": goal,
                "bus": {"credentialsSecretRef": {"name": "bus-key"}},
                "handler": {"port": 8080, "healthPath": "/healthz", "timeoutSeconds": 60},
                "template": {"spec": {"containers": [{"name": "handler", "image": image}]}},
                "scaling": dict(scaling),
            },
        }
