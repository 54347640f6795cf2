"""The few Kubernetes API calls the operator makes, over one aiohttp session.

Credentials come from kopf's own login (kubeconfig or the pod's service account), so the
operator has a single notion of "the cluster". Kubernetes answers are mapped to the operator's
error tree with the API server's message kept: it names the field that was wrong.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import orjson

from .errors import OperatorError

__all__ = ["KubeApi", "KubeApiError", "KubeNotFoundError", "connect"]

FIELD_MANAGER = "intent-fleet-operator"


class KubeApiError(OperatorError):
    """The API server refused a call; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFoundError(KubeApiError):
    pass


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


@dataclass
class KubeApi:
    """Typed-enough wrappers for the calls the reconciler and autoscaler need."""

    session: aiohttp.ClientSession
    server: str

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method, self.server + path, data=data, headers=headers, params=params
        ) as answer:
            text = await answer.read()
            if answer.status >= 400:
                try:
                    message = orjson.loads(text).get("message", "")
                except (orjson.JSONDecodeError, AttributeError):
                    message = text[:300].decode(errors="replace")
                error = KubeNotFoundError if answer.status == 404 else KubeApiError
                raise error(f"{method} {path}: {answer.status} {message}", answer.status)
            return orjson.loads(text) if text else None

    async def apply(self, obj: Mapping[str, Any], force: bool = True) -> Any:
        """Server-side apply under the operator's one field manager."""
        meta = obj["metadata"]
        group_version = obj["apiVersion"]
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        plural = obj["kind"].lower() + "s"
        path = f"{base}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self.request("PATCH", path, obj, "application/apply-patch+yaml", params)

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> Any:
        return await self.request("PATCH", path, patch, "application/merge-patch+json")

    async def deployment(self, namespace: str, name: str) -> Any:
        return await self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    async def pods(self, namespace: str, selector: str) -> list[Any]:
        answer = await self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        return list(answer.get("items", []))

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        secret = await self.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        data = (secret.get("data") or {}).get(key)
        if data is None:
            raise KubeNotFoundError(f"secret {namespace}/{name} has no key {key!r}", 404)
        return base64.b64decode(data).decode().strip()


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
        connector=connector,
        headers=_headers(info),
        timeout=aiohttp.ClientTimeout(total=request_timeout),
    )
    return KubeApi(session=session, server=info.server.rstrip("/"))
