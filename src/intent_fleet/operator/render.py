"""Render the worker Deployment for an IntentWorker: docs/architecture.md, "Pod anatomy", as data.

- The sidecar is a native sidecar (an init container with ``restartPolicy: Always``), so it
  starts before the handler and stops after it.
- The handler container's ``preStop`` is an ``httpGet`` to the sidecar's drain endpoint on the
  ops listener: the kubelet runs the hook against the pod IP, it works in any handler image
  (no shell or curl needed), and the handler gets SIGTERM only once in-flight work is done.
- The grace period covers the handler timeout plus a margin, so a drain is never cut short.
- The API key is a Secret volume mounted into the sidecar only; the template may not touch it
  (:mod:`~intent_fleet.operator.podpolicy`, which also fills in the restricted defaults).

Everything here is pure: the same IntentWorker and replica count always give the same object,
which is what makes server-side apply a no-op when nothing changed.
"""

from __future__ import annotations

import copy
import hashlib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intent_fleet import __version__
from intent_fleet.protocol import Problems

from .podpolicy import CA_VOLUME, CREDENTIALS_VOLUME, harden
from .spec import API_GROUP, API_VERSION, KIND, WorkerSpec

__all__ = [
    "DRAIN_HEADER",
    "SIDECAR_NAME",
    "WORKER_LABEL",
    "RenderSettings",
    "drain_token",
    "render_deployment",
    "selector_labels",
]

WORKER_LABEL = f"{API_GROUP}/worker"
SIDECAR_NAME = "intent-sidecar"
DRAIN_HEADER = "X-Intent-Drain-Token"
CREDENTIALS_DIR = "/var/run/intent-fleet/credentials"
CA_DIR = "/var/run/intent-fleet/ca"
NONROOT = 65532


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Operator-wide rendering defaults (the chart sets them from its values)."""

    #: Sidecar image when the IntentWorker names none.
    sidecar_image: str = f"localhost/intent-fleet/sidecar:{__version__}"
    #: Bus URL when the IntentWorker names none (the chart sets its own bus's); "" = required.
    default_bus_url: str = ""
    #: Pod-IP port of the sidecar's ops listener (probes, drain, state, metrics).
    ops_port: int = 9090
    #: Seconds added to the handler timeout for the pod's termination grace period.
    grace_margin_seconds: int = 30
    #: Sidecar resources when the IntentWorker sets none.
    sidecar_requests_cpu: str = "50m"
    sidecar_requests_memory: str = "64Mi"
    sidecar_limits_memory: str = "256Mi"

    def problems(self) -> Problems:
        if not self.sidecar_image.strip():
            yield "sidecar_image", "must name an image"
        url = self.default_bus_url
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                yield "default_bus_url", f"must be an absolute http:// or https:// URL, got {url!r}"


def selector_labels(worker: WorkerSpec) -> dict[str, str]:
    """The Deployment's selector; also the IntentWorker's ``status.selector`` for /scale."""
    return {WORKER_LABEL: worker.name}


def drain_token(worker: WorkerSpec) -> str:
    """A per-IntentWorker token for the drain hook.

    It only has to keep other pods on the network from draining a worker; anyone who can read
    the pod spec sees it anyway, so deriving it from the uid (itself only readable by those who
    may read the IntentWorker) is enough and keeps rendering pure.
    """
    return hashlib.sha256(f"intent-fleet-drain:{worker.uid}".encode()).hexdigest()[:32]


def _labels(worker: WorkerSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "intent-worker",
        "app.kubernetes.io/instance": worker.name,
        "app.kubernetes.io/managed-by": "intent-fleet",
        **selector_labels(worker),
    }


def _owner(worker: WorkerSpec) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": worker.name,
        "uid": worker.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _sidecar_env(worker: WorkerSpec, settings: RenderSettings) -> list[dict[str, Any]]:
    handler = worker.handler
    values = {
        "INTENT_GOAL": worker.goal,
        "INTENT_NAMESPACE": worker.bus.namespace,
        "INTENT_BUS_URL": worker.bus.url,
        "INTENT_API_KEY_FILE": f"{CREDENTIALS_DIR}/api-key",
        "INTENT_CA_FILE": f"{CA_DIR}/ca.crt" if worker.bus.ca_configmap else "",
        "INTENT_APP_PORT": str(handler.port),
        "INTENT_APP_PATH": handler.path,
        "INTENT_APP_HEALTH_PATH": handler.health_path,
        "INTENT_CONCURRENCY": str(handler.concurrency),
        "INTENT_HANDLER_TIMEOUT": str(handler.timeout_seconds),
        "INTENT_DRAIN_TIMEOUT": str(handler.timeout_seconds + settings.grace_margin_seconds // 2),
        "INTENT_CAPABILITIES": ",".join(worker.bus.capabilities),
        "INTENT_LOG_LEVEL": worker.sidecar.log_level,
        "INTENT_OPS_LISTEN": f"0.0.0.0:{settings.ops_port}",
        "INTENT_DRAIN_TOKEN": drain_token(worker),
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items() if v != ""]
    env.append(
        {"name": "INTENT_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    )
    return env


def _probe(path: str, settings: RenderSettings, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": settings.ops_port}, **timing}


def _sidecar(worker: WorkerSpec, settings: RenderSettings) -> dict[str, Any]:
    resources = worker.sidecar.resources or {
        "requests": {
            "cpu": settings.sidecar_requests_cpu,
            "memory": settings.sidecar_requests_memory,
        },
        "limits": {"memory": settings.sidecar_limits_memory},
    }
    return {
        "name": SIDECAR_NAME,
        "image": worker.sidecar.image or settings.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        # A native sidecar: started before the handler, stopped after it.
        "restartPolicy": "Always",
        "env": _sidecar_env(worker, settings),
        "ports": [{"name": "intent-ops", "containerPort": settings.ops_port}],
        # Started = the sidecar runs; the handler starts only after that, so the startup probe
        # must not wait for the handler (readiness does).
        "startupProbe": _probe("/healthz", settings, periodSeconds=1, failureThreshold=60),
        "livenessProbe": _probe("/healthz", settings, periodSeconds=10, failureThreshold=3),
        "readinessProbe": _probe("/readyz", settings, periodSeconds=2, failureThreshold=2),
        "resources": dict(resources),
        "volumeMounts": [
            {"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_DIR, "readOnly": True},
            *(
                [{"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}]
                if worker.bus.ca_configmap
                else []
            ),
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT,
            # Its own group, whatever the template says: the pod's fsGroup, which owns the
            # Secret volume (mode 0440), reaches the sidecar as a supplemental group anyway.
            "runAsGroup": NONROOT,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _with_drain_hook(
    container: Mapping[str, Any], worker: WorkerSpec, settings: RenderSettings
) -> dict[str, Any]:
    handler = dict(container)
    lifecycle = dict(handler.get("lifecycle") or {})
    # The drain hook replaces any preStop of the user's: without it scale-in cuts jobs off.
    lifecycle["preStop"] = {
        "httpGet": {
            "path": "/v1/drain",
            "port": settings.ops_port,
            "httpHeaders": [{"name": DRAIN_HEADER, "value": drain_token(worker)}],
        }
    }
    handler["lifecycle"] = lifecycle
    return handler


def _sidecar_volumes(worker: WorkerSpec) -> list[dict[str, Any]]:
    """The bus key (readable by the sidecar's group only) and the bus CA, when named."""
    volumes: list[dict[str, Any]] = [
        {
            "name": CREDENTIALS_VOLUME,
            "secret": {
                "secretName": worker.bus.secret_name,
                "items": [{"key": worker.bus.secret_key, "path": "api-key"}],
                "defaultMode": 0o440,
            },
        }
    ]
    if worker.bus.ca_configmap:
        volumes.append(
            {
                "name": CA_VOLUME,
                "configMap": {
                    "name": worker.bus.ca_configmap,
                    "items": [{"key": worker.bus.ca_key, "path": "ca.crt"}],
                },
            }
        )
    return volumes


def render_deployment(
    worker: WorkerSpec, replicas: int, settings: RenderSettings | None = None
) -> dict[str, Any]:
    """The Deployment to server-side apply for ``worker`` at ``replicas``."""
    settings = settings or RenderSettings()
    template = copy.deepcopy(dict(worker.template))
    pod = harden(template.get("spec") or {})
    meta = dict(template.get("metadata") or {})
    labels = _labels(worker)
    meta["labels"] = {**dict(meta.get("labels") or {}), **labels}

    containers = [dict(c) for c in pod.get("containers", [])]
    # The first container is the handler (the one the sidecar forwards to).
    containers[0] = _with_drain_hook(containers[0], worker, settings)
    pod["containers"] = containers
    pod["securityContext"].setdefault("fsGroup", NONROOT)
    sidecar = _sidecar(worker, settings)
    pod["initContainers"] = [sidecar, *pod.get("initContainers", [])]
    pod["volumes"] = [*pod.get("volumes", []), *_sidecar_volumes(worker)]
    grace = worker.handler.timeout_seconds + settings.grace_margin_seconds
    pod["terminationGracePeriodSeconds"] = max(
        grace, int(pod.get("terminationGracePeriodSeconds", 0))
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": worker.name,
            "namespace": worker.namespace,
            "labels": labels,
            "ownerReferences": [_owner(worker)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(worker)},
            # Never fewer ready workers than asked for during a rollout: surge, then drain.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": {"metadata": meta, "spec": pod},
        },
    }
