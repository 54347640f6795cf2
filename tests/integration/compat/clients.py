"""The two ways the compatibility tests talk to a bus.

``SdkDriver`` runs a driver script under a published SDK's own interpreter and
returns the JSON observations it printed. ``BusHttp`` is an independent signed
HTTP client (stdlib ``urllib`` plus the project's signing code) that checks
what the bus really stored, so a test never trusts the SDK's word alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intent_fleet.protocol.signing import canonical_body, sign_request
from tests.support.sdkenv import SdkEnv

__all__ = ["DRIVERS", "BusHttp", "HttpAnswer", "SdkDriver"]

DRIVERS = Path(__file__).parent / "drivers"
DRIVER_TIMEOUT_SECONDS = 90.0

# Loopback only: a proxy from the environment must never see these requests.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class SdkDriver:
    """Runs ``drivers/<script>`` with the SDK virtualenv's python."""

    env: SdkEnv
    script: str
    home: Path

    def run(self, scenario: str, url: str, *args: str, api_key: str) -> dict[str, Any]:
        cmd = [str(self.env.python), "-I", str(DRIVERS / self.script), scenario, url, *args]
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=self._environment(api_key),
            timeout=DRIVER_TIMEOUT_SECONDS,
            check=False,
        )
        took = time.monotonic() - started
        context = (
            f"{self.script} {scenario} (intent-bus {self.env.version}) exited {proc.returncode} "
            f"after {took:.1f} s\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
        assert proc.returncode == 0, context
        try:
            doc: dict[str, Any] = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"driver printed no JSON document: {exc}\n{context}") from None
        assert doc.get("sdk_version") == self.env.version, context
        return doc

    def _environment(self, api_key: str) -> dict[str, str]:
        # HOME is a scratch directory so a developer's ~/.apikey is never picked up,
        # and nothing from the project venv (PYTHONPATH, VIRTUAL_ENV) leaks in.
        self.home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "INTENT_API_KEY": api_key,
            "NO_PROXY": "*",
            "no_proxy": "*",
            "PYTHONDONTWRITEBYTECODE": "1",
        }


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    doc: Any

    def error_code(self) -> str | None:
        if isinstance(self.doc, dict) and isinstance(self.doc.get("error"), dict):
            code = self.doc["error"].get("code")
            return code if isinstance(code, str) else None
        return None


@dataclass(frozen=True, slots=True)
class BusHttp:
    """A signed protocol client, independent of the SDK under test."""

    url: str
    admin_secret: str

    def call(
        self,
        method: str,
        path: str,
        *,
        api_key: str | None,
        body: Any = None,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> HttpAnswer:
        raw = canonical_body(body)
        sent: dict[str, str] = {"Content-Type": "application/json", **(headers or {})}
        if api_key is not None:
            if sign:
                signed = sign_request(
                    api_key=api_key, method=method, path=path, body=raw, now=time.time()
                )
                sent.update(signed.as_dict())
            else:
                sent["X-API-KEY"] = api_key
        req = urllib.request.Request(self.url + path, data=raw or None, method=method, headers=sent)
        try:
            with _NO_PROXY.open(req, timeout=10) as resp:
                return _answer(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return _answer(err.code, dict(err.headers), err.read())

    def get(self, path: str, *, api_key: str) -> HttpAnswer:
        return self.call("GET", path, api_key=api_key)

    def status(self, intent_id: str, *, api_key: str) -> dict[str, Any]:
        answer = self.get(f"/status/{intent_id}", api_key=api_key)
        assert answer.status == 200, answer
        assert isinstance(answer.doc, dict)
        return answer.doc

    def admin(self, method: str, path: str, body: Any = None) -> HttpAnswer:
        return self.call(
            method, path, api_key=None, body=body, headers={"X-Admin-Token": self.admin_secret}
        )

    def new_key(self, owner: str) -> str:
        answer = self.admin("POST", "/admin/generate_key", {"owner": owner})
        assert answer.status == 201, answer
        key = answer.doc["api_key"]
        assert isinstance(key, str)
        return key


def _answer(status: int, headers: dict[str, str], raw: bytes) -> HttpAnswer:
    doc: Any = None
    if raw:
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            doc = raw.decode(errors="replace")
    return HttpAnswer(status=status, headers=headers, doc=doc)
