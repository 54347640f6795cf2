"""The few Kubernetes API calls the operator makes, over one aiohttp session.

Credentials come from kopf's own login (kubeconfig or the pod's service account), so the
operator has a single notion of "the cluster"; a 401 logs in again once and retries, as kopf's
own client does, so a rotated service-account token is picked up. Kubernetes answers are mapped
to the operator's error tree with the API server's message kept (it names the field that was
wrong), and so are aiohttp's and the OS's errors, once, here: a caller catches
:class:`KubeApiError` and nothing else.

Why not lightkube or kubernetes_asyncio: the operator needs six calls on five resource types,
kopf already does the login, and a client of its own keeps every path built from checked,
encoded names (:class:`Resource`) in one screenful.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import kopf
import orjson
import yarl

from .errors import (
    InvalidNameError,
    KubeApiError,
    KubeNotFoundError,
    KubeUnreachableError,
    OperatorError,
)
from .names import check_label, check_subdomain

__all__ = [
    "DEPLOYMENTS",
    "LEASES",
    "PODS",
    "SECRETS",
    "SERVICE_ACCOUNTS",
    "KubeApi",
    "KubeApiError",
    "KubeNotFoundError",
    "KubeUnreachableError",
    "Login",
    "Resource",
    "connect",
    "secret_value",
]

FIELD_MANAGER = "intent-fleet-operator"

#: Asks the API server for an object's metadata only (no data, no spec): enough to check a label.
_METADATA_ONLY: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


@dataclass(frozen=True, slots=True)
class Resource:
    """A namespaced resource type: where its objects live in the API.

    Paths are built only here, from checked names, one percent-encoded segment each, so no
    value can add, remove or climb a segment (see :mod:`~intent_fleet.operator.names`).
    """

    #: ``v1`` for the core group, else ``group/version``.
    api_version: str
    #: The resource's plural, as the API spells it (a fixed table, not ``kind.lower() + "s"``).
    plural: str
    kind: str

    def collection(self, namespace: str) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        ns = _segment(check_label(namespace, "namespace"))
        return f"{base}/namespaces/{ns}/{self.plural}"

    def item(self, namespace: str, name: str, subresource: str = "") -> str:
        checked = check_subdomain(name, f"{self.kind} name")
        path = f"{self.collection(namespace)}/{_segment(checked)}"
        return f"{path}/{_segment(subresource)}" if subresource else path


def _segment(value: str) -> str:
    # Checked names never need it; encoding anyway means a future caller that skips the check
    # still cannot smuggle '/' or '%2F' into the path. Dot segments survive encoding ('.' is
    # unreserved), so they are refused outright.
    if value in ("", ".", ".."):
        raise InvalidNameError("an API path segment must not be empty, '.' or '..'")
    return quote(value, safe="")


DEPLOYMENTS: Final = Resource("apps/v1", "deployments", "Deployment")
PODS: Final = Resource("v1", "pods", "Pod")
SECRETS: Final = Resource("v1", "secrets", "Secret")
SERVICE_ACCOUNTS: Final = Resource("v1", "serviceaccounts", "ServiceAccount")
LEASES: Final = Resource("coordination.k8s.io/v1", "leases", "Lease")

#: What :meth:`KubeApi.apply` may apply, by (apiVersion, kind).
_APPLICABLE: Final = {(r.api_version, r.kind): r for r in (DEPLOYMENTS,)}


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=info.ca_path,
        cadata=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl wants files; these live only as long as the load call.
        with tempfile.NamedTemporaryFile() as c, tempfile.NamedTemporaryFile() as k:
            c.write(_bytes(info.certificate_data))
            k.write(_bytes(info.private_key_data))
            c.flush()
            k.flush()
            context.load_cert_chain(c.name, k.name)
    elif cert and key:
        context.load_cert_chain(cert, key)
    return context


def _bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode()


def _headers(info: kopf.ConnectionInfo) -> dict[str, str]:
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


#: Fresh ``Authorization`` headers (a re-read token); called when the API server answers 401.
Login = Callable[[], Mapping[str, str]]


@dataclass
class KubeApi:
    """The calls the reconciler, the autoscaler and the leader election need.

    Every path comes from a :class:`Resource`; the request URL is handed to aiohttp already
    encoded, so nothing re-normalises it on the way out.
    """

    session: aiohttp.ClientSession
    server: str
    #: The credentials sent with every request.
    auth: Mapping[str, str] = field(default_factory=dict)
    #: Where fresh credentials come from after a 401; None = a 401 is final.
    login: Login | None = None

    async def close(self) -> None:
        await self.session.close()

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        url = yarl.URL(self.server + path, encoded=True)
        if params:
            url = url.update_query(params)
        for fresh in (False, True):
            headers = {"Accept": accept, **self.auth}
            if data is not None:
                headers["Content-Type"] = content_type
            status, text = await self._send(method, url, data, headers)
            if status == 401 and not fresh and self.login is not None:
                self.auth = dict(self.login())
                continue
            break
        if status >= 400:
            try:
                message = orjson.loads(text).get("message", "")
            except (orjson.JSONDecodeError, AttributeError):
                message = text[:300].decode(errors="replace")
            error = KubeNotFoundError if status == 404 else KubeApiError
            raise error(f"{method} {path}: {status} {message}", status)
        return orjson.loads(text) if text else None

    async def _send(
        self, method: str, url: yarl.URL, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        try:
            async with self.session.request(method, url, data=data, headers=headers) as answer:
                return answer.status, await answer.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # aiohttp's timeouts are TimeoutErrors, and its connection errors OSErrors.
            what = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise KubeUnreachableError(
                f"{method} {url.path}: {self.server} unreachable: {what}"
            ) from exc

    async def get(self, resource: Resource, namespace: str, name: str) -> Any:
        return await self._request("GET", resource.item(namespace, name))

    async def metadata(self, resource: Resource, namespace: str, name: str) -> Mapping[str, Any]:
        """An object's ``metadata`` only (labels, owners): no Secret value is transferred."""
        found = await self._request("GET", resource.item(namespace, name), accept=_METADATA_ONLY)
        meta = (found or {}).get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    async def list(self, resource: Resource, namespace: str, selector: str) -> list[Any]:
        answer = await self._request(
            "GET", resource.collection(namespace), params={"labelSelector": selector}
        )
        return list(answer.get("items", []))

    async def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> Any:
        return await self._request("POST", resource.collection(namespace), body)

    async def replace(
        self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Any:
        return await self._request("PUT", resource.item(namespace, name), body)

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str = "",
    ) -> Any:
        path = resource.item(namespace, name, subresource)
        return await self._request(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> Any:
        """Server-side apply under the operator's one field manager."""
        resource = _APPLICABLE.get((obj["apiVersion"], obj["kind"]))
        if resource is None:
            raise OperatorError(f"the operator does not apply {obj['kind']} objects")
        meta = obj["metadata"]
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self._request(
            "PATCH",
            resource.item(meta["namespace"], meta["name"]),
            obj,
            content_type="application/apply-patch+yaml",
            params=params,
        )

    async def secret(self, namespace: str, name: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] = await self.get(SECRETS, namespace, name)
        return found


def secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """The decoded value of ``key`` in a Secret object, or None when it has no such key."""
    data = (secret.get("data") or {}).get(key)
    if not isinstance(data, str):
        return None
    return base64.b64decode(data).decode(errors="replace").strip()


async def connect(request_timeout: float = 30.0) -> KubeApi:
    """A client from kopf's login: the kubeconfig if present, else the pod's service account."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise OperatorError("no Kubernetes credentials: neither a service account nor a kubeconfig")
    connector = aiohttp.TCPConnector(ssl=_ssl_context(info), limit=32)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
    )
    return KubeApi(
        session=session, server=info.server.rstrip("/"), auth=_headers(info), login=_login_again
    )


def _login_again() -> Mapping[str, str]:
    """The credentials as they are now: a service account's token file is rotated by the
    kubelet, a kubeconfig may have been refreshed."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    return _headers(info) if info is not None else {}
