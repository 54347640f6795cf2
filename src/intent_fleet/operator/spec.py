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

from intent_fleet.protocol import ErrorFor, integer_field, object_field, text_field
from intent_fleet.protocol.limits import MAX_GOAL_CHARS

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


def _at(where: str) -> ErrorFor:
    """The field readers' error for the object at ``where``: the field's path in the message."""

    def error(name: str, text: str) -> InvalidSpecError:
        return InvalidSpecError(f"{where}.{name} {text}" if where else f"{name} {text}")

    return error


def _bus(spec: Mapping[str, Any], default_url: str) -> BusSpec:
    bus = object_field(spec, "bus", error=_at("spec"))
    at = _at("spec.bus")
    url = text_field(bus, "url", error=at, default=default_url)
    if not url:
        raise InvalidSpecError(
            "spec.bus.url is required: this operator has no default bus (--default-bus-url)"
        )
    secret = object_field(bus, "credentialsSecretRef", error=at)
    ca = object_field(bus, "caConfigMapRef", error=at)
    capabilities = bus.get("capabilities") or []
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise InvalidSpecError("spec.bus.capabilities must be a list of strings")
    return BusSpec(
        url=url,
        namespace=text_field(bus, "namespace", error=at, default="default"),
        secret_name=check_subdomain(
            text_field(secret, "name", error=_at("spec.bus.credentialsSecretRef")),
            "spec.bus.credentialsSecretRef.name",
        ),
        secret_key=_secret_key(secret, "spec.bus.credentialsSecretRef", "api-key"),
        capabilities=tuple(capabilities),
        protocol=text_field(bus, "protocol", error=at, default="auto"),
        ca_configmap=_optional_name(ca, "spec.bus.caConfigMapRef"),
        ca_key=_secret_key(ca, "spec.bus.caConfigMapRef", "ca.crt"),
    )


def _secret_key(ref: Mapping[str, Any], where: str, default: str) -> str:
    key = text_field(ref, "key", error=_at(where), default=default)
    if not _SECRET_KEY.fullmatch(key):
        raise InvalidSpecError(
            f"{where}.key must be 1-253 letters, digits, '-', '_' or '.' (a Secret data key)"
        )
    return key


def _handler(spec: Mapping[str, Any]) -> HandlerSpec:
    handler = object_field(spec, "handler", error=_at("spec"))
    at = _at("spec.handler")
    return HandlerSpec(
        port=integer_field(handler, "port", default=8080, error=at),
        path=text_field(handler, "path", error=at, default="/"),
        health_path=text_field(handler, "healthPath", error=at, default=""),
        timeout_seconds=integer_field(handler, "timeoutSeconds", default=300, error=at),
        concurrency=integer_field(handler, "concurrency", default=1, error=at),
    )


def _policy(spec: Mapping[str, Any]) -> tuple[ScalingPolicy, float]:
    scaling = object_field(spec, "scaling", error=_at("spec"))
    at = _at("spec.scaling")
    down = object_field(scaling, "scaleDown", error=at)
    up = object_field(scaling, "scaleUp", error=at)
    at_down, at_up = _at("spec.scaling.scaleDown"), _at("spec.scaling.scaleUp")
    policy = ScalingPolicy(
        min_replicas=integer_field(scaling, "minReplicas", default=0, error=at),
        max_replicas=integer_field(scaling, "maxReplicas", default=10, error=at),
        target_per_replica=integer_field(scaling, "targetPerReplica", default=10, error=at),
        activation_backlog=integer_field(scaling, "activationBacklog", default=0, error=at),
        cooldown_seconds=float(integer_field(scaling, "cooldownSeconds", default=300, error=at)),
        scale_down_stabilization_seconds=float(
            integer_field(down, "stabilizationWindowSeconds", default=60, error=at_down)
        ),
        scale_up_max_step=(
            None
            if up.get("maxStep") is None
            else integer_field(up, "maxStep", default=1, error=at_up)
        ),
        scale_down_max_step=(
            None
            if down.get("maxStep") is None
            else integer_field(down, "maxStep", default=1, error=at_down)
        ),
    )
    interval = float(integer_field(scaling, "pollingIntervalSeconds", default=5, error=at))
    return policy, interval


def _source(spec: Mapping[str, Any]) -> BacklogSourceSpec:
    source = object_field(spec, "backlogSource", error=_at("spec"))
    at_source = _at("spec.backlogSource")
    kind = text_field(source, "type", error=at_source, default="busStats")
    if kind != "prometheus":
        return BacklogSourceSpec(type=kind)
    prom = object_field(source, "prometheus", error=at_source)
    where = "spec.backlogSource.prometheus"
    at = _at(where)
    labels = prom.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidSpecError(f"{where}.labels must map label names to strings")
    auth = object_field(prom, "authSecretRef", error=at)
    return BacklogSourceSpec(
        type=kind,
        prometheus=PrometheusSpec(
            url=text_field(prom, "url", error=at),
            metric=text_field(prom, "metric", error=at),
            labels=dict(labels),
            auth_secret_name=_optional_name(auth, f"{where}.authSecretRef"),
        ),
    )


def _optional_name(ref: Mapping[str, Any], where: str) -> str:
    name = text_field(ref, "name", error=_at(where), default="")
    return check_subdomain(name, f"{where}.name") if ref else ""


def _template(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    template = object_field(spec, "template", error=_at("spec"))
    pod = object_field(template, "spec", error=_at("spec.template"))
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
    meta = object_field(body, "metadata", error=_at(""))
    spec = object_field(body, "spec", error=_at(""))
    at_meta, at_spec = _at("metadata"), _at("spec")
    sidecar = object_field(spec, "sidecar", error=at_spec)
    at_sidecar = _at("spec.sidecar")
    resources = sidecar.get("resources")
    policy, interval = _policy(spec)
    replicas = spec.get("replicas")
    bus = _bus(spec, default_bus_url)
    template = _template(spec)
    check_template(template, credentials_secret=bus.secret_name)
    return WorkerSpec(
        name=check_subdomain(text_field(meta, "name", error=at_meta), "metadata.name"),
        namespace=check_label(text_field(meta, "namespace", error=at_meta), "metadata.namespace"),
        uid=text_field(meta, "uid", error=at_meta, default=""),
        generation=integer_field(meta, "generation", default=0, error=at_meta),
        goal=text_field(spec, "goal", error=at_spec, max_chars=MAX_GOAL_CHARS),
        bus=bus,
        handler=_handler(spec),
        template=template,
        sidecar=SidecarSpec(
            image=text_field(sidecar, "image", error=at_sidecar, default=""),
            resources=resources if isinstance(resources, Mapping) else None,
            log_level=text_field(sidecar, "logLevel", error=at_sidecar, default="info"),
        ),
        policy=policy,
        polling_interval_seconds=interval,
        source=_source(spec),
        paused=bool(spec.get("paused", False)),
        manual_replicas=(
            None if replicas is None else integer_field(spec, "replicas", default=0, error=at_spec)
        ),
    )
