"""An IntentWorker as typed values: what the renderer and the autoscaler act on.

The API server has already applied the CRD's schema, defaults and CEL rules; parsing checks
again what the operator's safety rests on (every name that goes into an API path, the pod
guardrails of :mod:`~intent_fleet.operator.podpolicy`), because a CRD can be older or looser
than this code. What the schema cannot say (a template without a usable handler container, say)
is an :class:`InvalidSpecError` whose message names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from intent_fleet.protocol import is_int, json_kind

from .errors import InvalidSpecError
from .names import check_label, check_subdomain
from .podpolicy import check_template
from .scaling import ScalingPolicy

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KIND",
    "BacklogSourceSpec",
    "BusSpec",
    "HandlerSpec",
    "PrometheusSpec",
    "SidecarSpec",
    "WorkerSpec",
    "parse_worker",
]

#: A Secret data key (apimachinery's IsConfigMapKey).
_SECRET_KEY: Final = re.compile(r"[-._a-zA-Z0-9]{1,253}")

API_GROUP = "intentbus.io"
API_VERSION = "v1alpha1"
KIND = "IntentWorker"


@dataclass(frozen=True, slots=True)
class BusSpec:
    """Where the worker's sidecars claim from, and with which key."""

    url: str
    namespace: str
    secret_name: str
    secret_key: str
    capabilities: tuple[str, ...] = ()
    protocol: str = "auto"
    #: ConfigMap (and its key) with the CA an https:// bus is verified against; "" = the
    #: sidecar image's system trust store.
    ca_configmap: str = ""
    ca_key: str = "ca.crt"


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """How the sidecar reaches the handler container on 127.0.0.1."""

    port: int = 8080
    path: str = "/"
    health_path: str = ""
    timeout_seconds: int = 300
    concurrency: int = 1


@dataclass(frozen=True, slots=True)
class SidecarSpec:
    """Overrides for the sidecar container; empty values mean the operator's defaults."""

    image: str = ""
    resources: Mapping[str, Any] | None = None
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class PrometheusSpec:
    url: str
    metric: str
    labels: Mapping[str, str] = field(default_factory=dict)
    auth_secret_name: str = ""


@dataclass(frozen=True, slots=True)
class BacklogSourceSpec:
    type: str = "busStats"
    prometheus: PrometheusSpec | None = None


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One IntentWorker, identity included (the owner reference needs uid)."""

    name: str
    namespace: str
    uid: str
    generation: int
    goal: str
    bus: BusSpec
    handler: HandlerSpec
    template: Mapping[str, Any]
    sidecar: SidecarSpec
    policy: ScalingPolicy
    polling_interval_seconds: float
    source: BacklogSourceSpec
    paused: bool = False
    #: Set when the user pins replicas (manual mode): the autoscaler stands aside.
    manual_replicas: int | None = None


def _obj(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidSpecError(f"{where}.{key} must be an object, not {json_kind(value)}")
    return value


def _int(doc: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = doc.get(key, default)
    if not is_int(value):
        raise InvalidSpecError(f"{where}.{key} must be an integer, not {json_kind(value)}")
    return value


def _str(doc: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise InvalidSpecError(f"{where}.{key} must be a string, not {json_kind(value)}")
    return value


def _bus(spec: Mapping[str, Any], default_url: str) -> BusSpec:
    bus = _obj(spec, "bus", "spec")
    url = _str(bus, "url", "spec.bus", default_url)
    if not url:
        raise InvalidSpecError(
            "spec.bus.url is required: this operator has no default bus (--default-bus-url)"
        )
    secret = _obj(bus, "credentialsSecretRef", "spec.bus")
    ca = _obj(bus, "caConfigMapRef", "spec.bus")
    capabilities = bus.get("capabilities") or []
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise InvalidSpecError("spec.bus.capabilities must be a list of strings")
    return BusSpec(
        url=url,
        namespace=_str(bus, "namespace", "spec.bus", "default"),
        secret_name=check_subdomain(
            _str(secret, "name", "spec.bus.credentialsSecretRef"),
            "spec.bus.credentialsSecretRef.name",
        ),
        secret_key=_secret_key(secret, "spec.bus.credentialsSecretRef"),
        capabilities=tuple(capabilities),
        protocol=_str(bus, "protocol", "spec.bus", "auto"),
        ca_configmap=_optional_name(ca, "spec.bus.caConfigMapRef"),
        ca_key=_secret_key_named(ca, "spec.bus.caConfigMapRef", "ca.crt"),
    )


def _secret_key(ref: Mapping[str, Any], where: str) -> str:
    return _secret_key_named(ref, where, "api-key")


def _secret_key_named(ref: Mapping[str, Any], where: str, default: str) -> str:
    key = _str(ref, "key", where, default)
    if not _SECRET_KEY.fullmatch(key):
        raise InvalidSpecError(
            f"{where}.key must be 1-253 letters, digits, '-', '_' or '.' (a Secret data key)"
        )
    return key


def _handler(spec: Mapping[str, Any]) -> HandlerSpec:
    handler = _obj(spec, "handler", "spec")
    where = "spec.handler"
    return HandlerSpec(
        port=_int(handler, "port", where, 8080),
        path=_str(handler, "path", where, "/"),
        health_path=_str(handler, "healthPath", where, ""),
        timeout_seconds=_int(handler, "timeoutSeconds", where, 300),
        concurrency=_int(handler, "concurrency", where, 1),
    )


def _policy(spec: Mapping[str, Any]) -> tuple[ScalingPolicy, float]:
    scaling = _obj(spec, "scaling", "spec")
    where = "spec.scaling"
    down = _obj(scaling, "scaleDown", where)
    up = _obj(scaling, "scaleUp", where)
    up_step = up.get("maxStep")
    down_step = down.get("maxStep")
    policy = ScalingPolicy(
        min_replicas=_int(scaling, "minReplicas", where, 0),
        max_replicas=_int(scaling, "maxReplicas", where, 10),
        target_per_replica=_int(scaling, "targetPerReplica", where, 10),
        activation_backlog=_int(scaling, "activationBacklog", where, 0),
        cooldown_seconds=float(_int(scaling, "cooldownSeconds", where, 300)),
        scale_down_stabilization_seconds=float(
            _int(down, "stabilizationWindowSeconds", f"{where}.scaleDown", 60)
        ),
        scale_up_max_step=None if up_step is None else _int(up, "maxStep", f"{where}.scaleUp", 1),
        scale_down_max_step=(
            None if down_step is None else _int(down, "maxStep", f"{where}.scaleDown", 1)
        ),
    )
    interval = float(_int(scaling, "pollingIntervalSeconds", where, 5))
    return policy, interval


def _source(spec: Mapping[str, Any]) -> BacklogSourceSpec:
    source = _obj(spec, "backlogSource", "spec")
    kind = _str(source, "type", "spec.backlogSource", "busStats")
    if kind != "prometheus":
        return BacklogSourceSpec(type=kind)
    prom = _obj(source, "prometheus", "spec.backlogSource")
    where = "spec.backlogSource.prometheus"
    labels = prom.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidSpecError(f"{where}.labels must map label names to strings")
    auth = _obj(prom, "authSecretRef", where)
    return BacklogSourceSpec(
        type=kind,
        prometheus=PrometheusSpec(
            url=_str(prom, "url", where),
            metric=_str(prom, "metric", where),
            labels=dict(labels),
            auth_secret_name=_optional_name(auth, f"{where}.authSecretRef"),
        ),
    )


def _optional_name(ref: Mapping[str, Any], where: str) -> str:
    name = _str(ref, "name", where, "")
    return check_subdomain(name, f"{where}.name") if ref else ""


def _template(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    template = _obj(spec, "template", "spec")
    pod = _obj(template, "spec", "spec.template")
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise InvalidSpecError("spec.template.spec.containers must list the handler container")
    for index, container in enumerate(containers):
        if not isinstance(container, Mapping) or not container.get("name"):
            raise InvalidSpecError(f"spec.template.spec.containers[{index}] needs a name")
    return template


def parse_worker(body: Mapping[str, Any], *, default_bus_url: str = "") -> WorkerSpec:
    """Build a :class:`WorkerSpec` from an IntentWorker object as the API server returns it.

    ``default_bus_url`` stands in for an absent ``spec.bus.url`` (the chart's own bus)."""
    meta = _obj(body, "metadata", "")
    spec = _obj(body, "spec", "")
    sidecar = _obj(spec, "sidecar", "spec")
    resources = sidecar.get("resources")
    policy, interval = _policy(spec)
    replicas = spec.get("replicas")
    bus = _bus(spec, default_bus_url)
    template = _template(spec)
    check_template(template, credentials_secret=bus.secret_name)
    return WorkerSpec(
        name=check_subdomain(_str(meta, "name", "metadata"), "metadata.name"),
        namespace=check_label(_str(meta, "namespace", "metadata"), "metadata.namespace"),
        uid=_str(meta, "uid", "metadata", ""),
        generation=_int(meta, "generation", "metadata", 0),
        goal=_str(spec, "goal", "spec"),
        bus=bus,
        handler=_handler(spec),
        template=template,
        sidecar=SidecarSpec(
            image=_str(sidecar, "image", "spec.sidecar", ""),
            resources=resources if isinstance(resources, Mapping) else None,
            log_level=_str(sidecar, "logLevel", "spec.sidecar", "info"),
        ),
        policy=policy,
        polling_interval_seconds=interval,
        source=_source(spec),
        paused=bool(spec.get("paused", False)),
        manual_replicas=None if replicas is None else _int(spec, "replicas", "spec", 0),
    )
