"""What a worker pod may be, and the safe defaults it gets: pure functions over the template.

The operator creates Deployments with its own rights, so a template must not get anyone more
than the namespace's Pod Security baseline allows, whatever the namespace's own labels say:

* refused: host namespaces and ``shareProcessNamespace`` (the sidecar's local API, which signs
  with the key, would sit on the node's loopback or in reach of the handler's processes), and
  every other Pod Security *baseline* breach (privileged, hostPath, hostPort, added
  capabilities beyond the baseline set, unmasked /proc, unconfined seccomp or AppArmor, custom
  SELinux users, roles or types, unsafe sysctls, Windows host processes);
* refused: any use of the bus key's Secret by the template, and a pod-wide ``fsGroup`` of 0
  (supplemental groups reach the sidecar too);
* defaulted where the template says nothing: ``automountServiceAccountToken: false`` and the
  *restricted* container settings (non-root, no privilege escalation, all capabilities
  dropped, ``RuntimeDefault`` seccomp), so the README's worker is admitted in a namespace that
  enforces ``restricted``.

Every message names the field (``spec.template.spec...``) and never echoes the value.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .errors import PodRefusedError

__all__ = [
    "CA_VOLUME",
    "CREDENTIALS_VOLUME",
    "RESERVED_VOLUMES",
    "check_template",
    "harden",
    "referenced_secrets",
    "token_service_account",
]

_WHERE: Final = "spec.template.spec"

#: Capabilities Pod Security baseline lets a container add (the container runtime's defaults).
BASELINE_CAPABILITIES: Final = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
#: Namespaced sysctls Pod Security baseline allows.
SAFE_SYSCTLS: Final = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES: Final = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
_HOST_SHARING: Final = {
    "hostNetwork": "the sidecar's local API would listen on the node's loopback",
    "hostPID": "the handler's processes would share the node's process table",
    "hostIPC": "the pod would share the node's IPC namespace",
    "shareProcessNamespace": "the handler could read the sidecar's memory and environment",
}
#: Keys under which a pod spec names a Secret it reads (volumes of every kind, env).
_SECRET_NAME_KEYS: Final = frozenset({"secretName"})
_SECRET_REF_KEYS: Final = frozenset(
    {
        "secretRef",
        "secretKeyRef",
        "nodePublishSecretRef",
        "nodeStageSecretRef",
        "nodeExpandSecretRef",
        "controllerPublishSecretRef",
        "controllerExpandSecretRef",
    }
)
_APPARMOR_ANNOTATION: Final = "container.apparmor.security.beta.kubernetes.io/"


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod.get(kind) or ()):
            if isinstance(container, Mapping):
                yield f"{_WHERE}.{kind}[{index}]", container


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _check_security_context(where: str, context: Mapping[str, Any]) -> list[str]:
    problems = []
    if context.get("privileged") is True:
        problems.append(f"{where}.privileged must not be true")
    if context.get("procMount") not in (None, "Default"):
        problems.append(f"{where}.procMount must be Default")
    if _obj(context.get("seccompProfile")).get("type") == "Unconfined":
        problems.append(f"{where}.seccompProfile.type must not be Unconfined")
    if _obj(context.get("appArmorProfile")).get("type") == "Unconfined":
        problems.append(f"{where}.appArmorProfile.type must not be Unconfined")
    if _obj(context.get("windowsOptions")).get("hostProcess") is True:
        problems.append(f"{where}.windowsOptions.hostProcess must not be true")
    selinux = _obj(context.get("seLinuxOptions"))
    if selinux.get("type", "") not in SELINUX_TYPES:
        problems.append(f"{where}.seLinuxOptions.type must be a container type or unset")
    for field in ("user", "role"):
        if selinux.get(field):
            problems.append(f"{where}.seLinuxOptions.{field} must be unset")
    added = _obj(context.get("capabilities")).get("add") or ()
    if any(not isinstance(c, str) or c.upper() not in BASELINE_CAPABILITIES for c in added):
        problems.append(
            f"{where}.capabilities.add may only hold {', '.join(sorted(BASELINE_CAPABILITIES))}"
        )
    return problems


def _check_pod(pod: Mapping[str, Any], annotations: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{_WHERE}.{field} must not be true: {why}"
        for field, why in _HOST_SHARING.items()
        if pod.get(field) is True
    ]
    security = _obj(pod.get("securityContext"))
    problems += _check_security_context(f"{_WHERE}.securityContext", security)
    if security.get("fsGroup") == 0:
        problems.append(
            f"{_WHERE}.securityContext.fsGroup must not be 0: every container of the pod, the "
            "sidecar too, would join the root group"
        )
    for index, sysctl in enumerate(security.get("sysctls") or ()):
        if _obj(sysctl).get("name") not in SAFE_SYSCTLS:
            problems.append(f"{_WHERE}.securityContext.sysctls[{index}] is not a safe sysctl")
    for index, volume in enumerate(pod.get("volumes") or ()):
        if "hostPath" in _obj(volume):
            problems.append(f"{_WHERE}.volumes[{index}] must not be a hostPath volume")
    for where, container in _containers(pod):
        context = _obj(container.get("securityContext"))
        problems += _check_security_context(f"{where}.securityContext", context)
        for index, port in enumerate(container.get("ports") or ()):
            if _obj(port).get("hostPort") not in (None, 0):
                problems.append(f"{where}.ports[{index}].hostPort must be unset or 0")
    for key, value in annotations.items():
        if str(key).startswith(_APPARMOR_ANNOTATION) and value == "unconfined":
            problems.append("spec.template.metadata.annotations must not make AppArmor unconfined")
    return problems


def _walk_secret_names(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "imagePullSecrets":
                # Used by the kubelet to pull images; never readable inside the pod.
                continue
            if key in _SECRET_NAME_KEYS and isinstance(value, str):
                yield value
            elif key in _SECRET_REF_KEYS and isinstance(value, Mapping):
                name = value.get("name")
                if isinstance(name, str):
                    yield name
            elif key == "secret" and isinstance(value, Mapping) and "name" in value:
                # A projected volume's secret source.
                if isinstance(value["name"], str):
                    yield value["name"]
                yield from _walk_secret_names(value)
            else:
                yield from _walk_secret_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_secret_names(item)


def referenced_secrets(pod: Mapping[str, Any]) -> frozenset[str]:
    """Names of the Secrets the pod spec reads, in volumes of any kind and in env."""
    return frozenset(_walk_secret_names(pod))


def token_service_account(pod: Mapping[str, Any]) -> str | None:
    """The ServiceAccount whose token the pod can read, or None when it gets no token.

    A token comes from ``automountServiceAccountToken: true`` (the operator defaults it to
    false) or from a projected ``serviceAccountToken`` volume.
    """
    projected = any(
        "serviceAccountToken" in _obj(source)
        for volume in pod.get("volumes") or ()
        for source in _obj(_obj(volume).get("projected")).get("sources") or ()
    )
    if pod.get("automountServiceAccountToken") is True or projected:
        name = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
        return str(name)
    return None


#: The bus key, mounted into the sidecar only.
CREDENTIALS_VOLUME: Final = "intent-fleet-credentials"
#: The CA the sidecar verifies an https:// bus with (spec.bus.caConfigMapRef).
CA_VOLUME: Final = "intent-fleet-ca"
#: Volumes the operator adds to every worker pod; the template may neither define nor mount them.
RESERVED_VOLUMES: Final = frozenset({CREDENTIALS_VOLUME, CA_VOLUME})


def _check_reserved_volumes(pod: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{_WHERE}.volumes[{index}].name is reserved for the volumes the operator adds"
        for index, volume in enumerate(pod.get("volumes") or ())
        if _obj(volume).get("name") in RESERVED_VOLUMES
    ]
    for where, container in _containers(pod):
        for index, mount in enumerate(container.get("volumeMounts") or ()):
            if _obj(mount).get("name") in RESERVED_VOLUMES:
                problems.append(
                    f"{where}.volumeMounts[{index}] must not mount the operator's volumes: "
                    "the bus key belongs to the sidecar only"
                )
    return problems


def check_template(template: Mapping[str, Any], *, credentials_secret: str) -> None:
    """Raise :class:`PodRefusedError` listing every reason the template cannot be a worker pod."""
    pod = _obj(template.get("spec"))
    annotations = _obj(_obj(template.get("metadata")).get("annotations"))
    problems = _check_pod(pod, annotations) + _check_reserved_volumes(pod)
    if credentials_secret in referenced_secrets(pod):
        problems.append(
            f"{_WHERE} must not use the Secret of spec.bus.credentialsSecretRef: the bus key "
            "belongs to the sidecar only"
        )
    if problems:
        raise PodRefusedError("; ".join(problems))


def _harden_container(container: Mapping[str, Any], pod_context: Mapping[str, Any]) -> Any:
    hardened = dict(container)
    context = dict(_obj(container.get("securityContext")))
    root_asked = context.get("runAsUser", pod_context.get("runAsUser")) == 0
    if "runAsNonRoot" not in context and "runAsNonRoot" not in pod_context and not root_asked:
        context["runAsNonRoot"] = True
    context.setdefault("allowPrivilegeEscalation", False)
    capabilities = dict(_obj(context.get("capabilities")))
    capabilities.setdefault("drop", ["ALL"])
    context["capabilities"] = capabilities
    hardened["securityContext"] = context
    return hardened


def harden(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The template's pod spec with the restricted defaults filled in where it set none."""
    hardened = copy.deepcopy(dict(pod))
    hardened.setdefault("automountServiceAccountToken", False)
    pod_context = dict(_obj(hardened.get("securityContext")))
    containers_set_seccomp = all(
        "seccompProfile" in _obj(c.get("securityContext")) for _, c in _containers(hardened)
    )
    if "seccompProfile" not in pod_context and not containers_set_seccomp:
        pod_context["seccompProfile"] = {"type": "RuntimeDefault"}
    hardened["securityContext"] = pod_context
    for kind in ("initContainers", "containers"):
        if kind in hardened:
            hardened[kind] = [
                _harden_container(c, pod_context) if isinstance(c, Mapping) else c
                for c in hardened[kind]
            ]
    return hardened
