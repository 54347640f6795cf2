"""The test suite's view of a Kubernetes cluster: the harness's, or any cluster in KUBECONFIG.

Without KUBECONFIG the suite brings up hack/cluster itself (the profile a test asks for) and
tears it down at the end of the session, failing the session if anything is left behind.
With KUBECONFIG set, the same tests run against that cluster and nothing is started or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetcluster.release import Release
from fleetcluster.settings import ClusterSettings
from intent_fleet import __version__
from intent_fleet.operator.credentials import OPT_IN_LABEL
from intent_fleet.protocol import BusClient, ClientSettings
from tests.support.lifecycle import wait_until as lifecycle_wait_until

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "hack" / "cluster"

PROFILE_RANK = {"control-plane": 0, "node": 1}


def project_image(name: str) -> str:
    """A project image as `make cluster-images` tags it: with the project's version."""
    return f"localhost/intent-fleet/{name}:{__version__}"


class ClusterCommandError(AssertionError):
    """kubectl (or the harness) failed; the message carries its stderr."""


@dataclass
class Cluster:
    """kubectl against one cluster, with the waits the tests need."""

    kubeconfig: Path
    kubectl_binary: Path
    profile: str
    external: bool
    namespaces: list[str] = field(default_factory=list)
    #: The API server's audit log (Secrets and ServiceAccounts); None on someone else's cluster.
    audit_log: Path | None = None

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ClusterCommandError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def apply(self, *documents: dict[str, Any], server_side: bool = False) -> None:
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)})
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", "--field-manager=intent-fleet-tests"]
        self.kubectl(*args, stdin=body)

    def get(self, *args: str) -> Any:
        """The object as JSON, or None when it does not exist."""
        done = self.kubectl("get", *args, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr or "not found" in done.stderr:
                return None
            raise ClusterCommandError(f"kubectl get {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Until the CRD serves. Polled: ``kubectl wait`` fails outright while a fresh CRD
        has no conditions yet."""

        def established() -> bool:
            got = self.get(f"crd/{crd}") or {}
            conditions = got.get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_until(established, timeout, f"CRD {crd} established")

    def credentials_secret(
        self, namespace: str, name: str, *, opt_in: bool = True, **data: str
    ) -> None:
        """A Secret of ``data``, labelled so the operator may use it (unless ``opt_in=False``)."""
        literals = [f"--from-literal={key}={value}" for key, value in data.items()]
        self.kubectl("create", "secret", "generic", name, *literals, "-n", namespace)
        if opt_in:
            self.kubectl("label", "secret", name, "-n", namespace, f"{OPT_IN_LABEL}=true")

    def with_token(self, token: str, path: Path) -> Cluster:
        """The same cluster seen by whoever holds ``token`` (no client certificate)."""
        view = json.loads(self.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
        view["users"] = [{"name": "token", "user": {"token": token}}]
        view["contexts"][0]["context"]["user"] = "token"
        path.write_text(json.dumps(view))
        path.chmod(0o600)
        return Cluster(path, self.kubectl_binary, self.profile, self.external, [], self.audit_log)

    def audited(self, user: str) -> list[dict[str, Any]]:
        """Audit events of ``user`` so far (see the harness's audit policy for what is kept)."""
        return [e for e in self.audit_events() if e.get("user", {}).get("username") == user]

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event so far: requests on Secrets and ServiceAccounts, and the writes
        and single reads of IntentWorkers and Deployments."""
        assert self.audit_log is not None, "no audit log on an external cluster"
        events = []
        # Rotated files are named after their stem and a timestamp.
        for path in sorted(self.audit_log.parent.glob(f"{self.audit_log.stem}*")):
            if path.is_file():
                for line in path.read_text(errors="replace").splitlines():
                    events.append(json.loads(line))
        return events

    def release(self, name: str, namespace: str) -> Release:
        """charts/intent-fleet as ``name`` in ``namespace`` here (helm from the cache)."""
        helm = ClusterSettings().helm_bin / "helm"
        return Release(name, namespace, self.kubeconfig, helm, self.kubectl_binary)

    @contextlib.contextmanager
    def service_url(
        self, namespace: str, name: str, port: int, *, forward: bool | None = None
    ) -> Iterator[str]:
        """A base URL on this host for a Service: its ClusterIP on the harness's node (kube-proxy
        routes the host there), else, or with ``forward=True``, a `kubectl port-forward`."""
        if forward is None:
            forward = self.external
        if not forward:
            service = self.get("service", name, "-n", namespace)
            yield f"http://{service['spec']['clusterIP']}:{port}"
            return
        # kubectl prints a line per connection: into a file, so no unread pipe ever blocks it.
        with tempfile.TemporaryFile("w+") as said:
            proc = subprocess.Popen(
                [
                    str(self.kubectl_binary),
                    f"--kubeconfig={self.kubeconfig}",
                    "port-forward",
                    "--address=127.0.0.1",
                    "-n",
                    namespace,
                    f"service/{name}",
                    f":{port}",
                ],
                stdout=said,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:

                def bound() -> str | None:
                    said.seek(0)
                    found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) ->", said.read())
                    if found is None and proc.poll() is not None:
                        said.seek(0)
                        raise ClusterCommandError(f"kubectl port-forward: {said.read().strip()}")
                    return found.group(1) if found else None

                local = wait_until(bound, 30, f"kubectl port-forward to {namespace}/{name}")
                yield f"http://127.0.0.1:{local}"
            finally:
                proc.terminate()
                proc.wait(timeout=15)

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        self.namespaces.append(name)
        # Pods need the namespace's default service account, made by a controller.
        wait_until(
            lambda: self.get("serviceaccount", "default", "-n", name) is not None,
            30,
            f"default service account in {name}",
        )
        return name

    def delete_namespaces(self) -> None:
        for name in self.namespaces:
            self.kubectl("delete", "namespace", name, "--wait=false", check=False)
        self.namespaces.clear()


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """The suite's poll (tests.support.lifecycle), positional and slower, for API round trips."""
    last: list[Any] = [None]

    def probe() -> Any:
        last[0] = check()
        return last[0]

    return lifecycle_wait_until(
        probe, timeout=timeout, what=what, interval=every, detail=lambda: f"(last: {last[0]!r})"
    )


class ClusterManager:
    """Brings the harness up to the profile a test needs, once per session."""

    def __init__(self) -> None:
        self.settings = ClusterSettings()
        self.python = sys.executable
        self.started_by_us = False
        self.current: Cluster | None = None
        external = os.environ.get("KUBECONFIG")
        self.external = Path(external) if external else None

    def harness(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.python, str(HARNESS / "cluster.py"), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise ClusterCommandError(
                f"cluster.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
            )
        return done

    def get(self, profile: str) -> Cluster:
        kubectl = self.settings.k8s_bin / "kubectl"
        if self.external is not None:
            return Cluster(self.external, kubectl, "node", external=True)
        if self.current is not None and PROFILE_RANK[self.current.profile] >= PROFILE_RANK[profile]:
            return self.current
        if not self.settings.state_dir.exists():
            self.started_by_us = True
        done = self.harness("up", "--profile", profile)
        last = done.stdout.strip().splitlines()[-1]
        assert last.startswith("export KUBECONFIG="), f"cluster.py up ended with {last!r}"
        kubeconfig = Path(last.removeprefix("export KUBECONFIG="))
        self.current = Cluster(
            kubeconfig, kubectl, profile, external=False, audit_log=self.settings.audit_log
        )
        return self.current

    def finish(self, keep_logs: Path) -> None:
        if self.current is not None:
            self.current.delete_namespaces()
        if self.started_by_us:
            self.harness("down", "--keep-logs", str(keep_logs))


def readme_worker() -> dict[str, Any]:
    """The IntentWorker example of the README, as a user would copy it."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    (example,) = [b for b in blocks if "kind: IntentWorker" in b]
    return dict(yaml.safe_load(example))


async def publish_many(url: str, key: str, goal: str, count: int) -> list[str]:
    """Publish ``count`` intents ({"n": i}) to ``goal`` at once; their ids."""
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        receipts = await asyncio.gather(*(client.publish(goal, {"n": n}) for n in range(count)))
    return [r.id for r in receipts]


async def count_fulfilled(url: str, key: str, ids: list[str]) -> int:
    """How many of ``ids`` the bus has fulfilled (one it cannot answer for counts as not)."""
    async with BusClient(settings=ClientSettings(base_url=url), api_key=key) as client:
        found = await asyncio.gather(*(client.status(i) for i in ids), return_exceptions=True)
    return sum(1 for s in found if not isinstance(s, BaseException) and s.status == "fulfilled")
