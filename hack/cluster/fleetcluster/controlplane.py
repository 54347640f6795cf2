"""The control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback.

RBAC and the Node authorizer are on, service-account tokens are signed by a key of our own,
and every component authenticates with its own client certificate, as a kubeadm cluster would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcluster.kubeconfig import write_kubeconfig
from fleetcluster.pki import CertificateAuthority, Identity, Pair, service_account_keys
from fleetcluster.procs import Component, http_probe, https_probe, insecure_probe
from fleetcluster.settings import ClusterSettings


@dataclass(frozen=True)
class Credentials:
    """The files the control-plane components are started with."""

    ca: CertificateAuthority
    apiserver: Pair
    apiserver_kubelet_client: Pair
    service_account: Pair
    admin_kubeconfig: Path
    controller_manager_kubeconfig: Path
    scheduler_kubeconfig: Path


def issue_credentials(settings: ClusterSettings) -> Credentials:
    """Create (or reuse) the CA, serving and client certificates and the kubeconfigs."""
    pki = settings.pki_dir
    ca = CertificateAuthority(pki)
    apiserver = ca.issue(
        Identity(
            name="apiserver",
            common_name="kube-apiserver",
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", settings.service_address, settings.node_address),
        )
    )
    kubelet_client = ca.issue(
        Identity(
            name="apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organization="system:masters",
            client=True,
        )
    )
    admin = ca.issue(
        Identity(
            name="admin",
            common_name="intent-fleet-admin",
            organization="system:masters",
            client=True,
        )
    )
    manager = ca.issue(
        Identity(
            name="controller-manager", common_name="system:kube-controller-manager", client=True
        )
    )
    scheduler = ca.issue(
        Identity(name="scheduler", common_name="system:kube-scheduler", client=True)
    )
    server = settings.apiserver_url
    return Credentials(
        ca=ca,
        apiserver=apiserver,
        apiserver_kubelet_client=kubelet_client,
        service_account=service_account_keys(pki),
        admin_kubeconfig=write_kubeconfig(
            settings.admin_kubeconfig, server, ca.cert_path, admin, "intent-fleet-admin"
        ),
        controller_manager_kubeconfig=write_kubeconfig(
            pki / "controller-manager.kubeconfig",
            server,
            ca.cert_path,
            manager,
            "controller-manager",
        ),
        scheduler_kubeconfig=write_kubeconfig(
            pki / "scheduler.kubeconfig", server, ca.cert_path, scheduler, "scheduler"
        ),
    )


def etcd(settings: ClusterSettings) -> Component:
    ports = settings.ports
    client_url = f"http://127.0.0.1:{ports.etcd_client}"
    peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
    return Component(
        name="etcd",
        argv=[
            str(settings.etcd_bin / "etcd"),
            "--name=intent-fleet",
            f"--data-dir={settings.state_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=intent-fleet={peer_url}",
            # A test cluster: fsync on every write would make it slower than the code under test.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
        ready=http_probe(f"{client_url}/health"),
    )


#: Audited at metadata level (no bodies): every request on Secrets and ServiceAccounts, so
#: tests can prove whose reads reached which namespace; and the writes and single reads of
#: IntentWorkers and Deployments, so they can count what the operator costs the API server.
#: Everything else is left out.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: [secrets, serviceaccounts]
  - level: Metadata
    verbs: [get, create, update, patch, delete]
    resources:
      - group: intentbus.io
        resources: [intentworkers, intentworkers/status, intentworkers/scale]
      - group: apps
        resources: [deployments, deployments/scale]
  - level: None
"""


def apiserver(settings: ClusterSettings, creds: Credentials) -> Component:
    ports = settings.ports
    admin = settings.pki_dir
    policy = settings.state_dir / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    return Component(
        name="kube-apiserver",
        argv=[
            str(settings.k8s_bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            f"--advertise-address={settings.node_address}",
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={creds.apiserver.cert}",
            f"--tls-private-key-file={creds.apiserver.key}",
            f"--client-ca-file={creds.ca.cert_path}",
            f"--kubelet-client-certificate={creds.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={creds.apiserver_kubelet_client.key}",
            f"--kubelet-certificate-authority={creds.ca.cert_path}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={settings.service_subnet}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={creds.service_account.cert}",
            f"--service-account-signing-key-file={creds.service_account.key}",
            "--anonymous-auth=false",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={settings.audit_log}",
            "--audit-log-maxsize=64",
            "--audit-log-maxbackup=1",
            "--profiling=false",
            "--v=1",
        ],
        ready=https_probe(
            f"{settings.apiserver_url}/readyz",
            creds.ca.cert_path,
            admin / "admin.crt",
            admin / "admin.key",
        ),
    )


def _controller_flags(kubeconfig: str, port: int) -> list[str]:
    """One identity for talking to, and authenticating callers through, the apiserver."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager(settings: ClusterSettings, creds: Credentials) -> Component:
    kubeconfig = str(creds.controller_manager_kubeconfig)
    return Component(
        name="kube-controller-manager",
        argv=[
            str(settings.k8s_bin / "kube-controller-manager"),
            *_controller_flags(kubeconfig, settings.ports.controller_manager),
            f"--root-ca-file={creds.ca.cert_path}",
            f"--service-account-private-key-file={creds.service_account.key}",
            f"--cluster-signing-cert-file={creds.ca.cert_path}",
            f"--cluster-signing-key-file={creds.ca.key_path}",
            "--use-service-account-credentials=true",
            "--controllers=*",
        ],
        ready=insecure_probe(f"https://127.0.0.1:{settings.ports.controller_manager}/healthz"),
    )


def scheduler(settings: ClusterSettings, creds: Credentials) -> Component:
    kubeconfig = str(creds.scheduler_kubeconfig)
    return Component(
        name="kube-scheduler",
        argv=[
            str(settings.k8s_bin / "kube-scheduler"),
            *_controller_flags(kubeconfig, settings.ports.scheduler),
        ],
        ready=insecure_probe(f"https://127.0.0.1:{settings.ports.scheduler}/healthz"),
    )
