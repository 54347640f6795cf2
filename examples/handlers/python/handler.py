"""An intent-fleet handler in plain Python (standard library only).

The sidecar POSTs each intent's payload here; the answer decides the outcome
(2xx fulfil, 429/503 busy, other 4xx reject, 5xx fail). Payload knobs, shared
by every example handler so tests treat them alike:

    {"name": "Ada"}                  -> 200 {"greeting": "Hello, Ada!", ...}
    {"text": true}                   -> 200 text/plain
    {"sleep": 1.5}                   -> answers after 1.5 s
    {"fail": "why"}                  -> 500 with that text
    {"reject": "why"}                -> 422 with that text
    {"busy_first": true}             -> 503 (Retry-After: 1) the first time an intent is seen
    {"publish": {"goal", "payload"}} -> publishes through the sidecar first
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEEN_LOCK = threading.Lock()
SEEN: set[str] = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sidecar reuses connections

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per intent is logged below, never the payload

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        intent_id = self.headers.get("Intent-Id", "-")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
        except ValueError as exc:
            self._send(400, f"payload is not valid JSON: {exc}\n".encode(), "text/plain")
            return
        if not isinstance(payload, dict):
            payload = {}
        sys.stderr.write(
            f"python handler: intent {intent_id} attempt {self.headers.get('Intent-Attempt')}\n"
        )
        if payload.get("busy_first"):
            with SEEN_LOCK:
                first = intent_id not in SEEN
                SEEN.add(intent_id)
            if first:
                self._send(503, b"busy, try again\n", "text/plain", {"Retry-After": "1"})
                return
        if payload.get("sleep"):
            time.sleep(float(payload["sleep"]))
        if "fail" in payload:
            self._send(500, str(payload["fail"]).encode(), "text/plain")
            return
        if "reject" in payload:
            self._send(422, str(payload["reject"]).encode(), "text/plain")
            return
        name = str(payload.get("name", "world"))
        if payload.get("text"):
            self._send(200, f"Hello, {name}!".encode(), "text/plain; charset=utf-8")
            return
        result: dict[str, Any] = {
            "greeting": f"Hello, {name}!",
            "lang": "python",
            "attempt": int(self.headers.get("Intent-Attempt") or 0),
        }
        if isinstance(payload.get("publish"), dict):
            result["published"] = publish(payload["publish"])
        self._send(200, json.dumps(result).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def publish(doc: dict[str, Any]) -> str:
    """Publish a follow-up intent through the sidecar's local API (no key needed)."""
    url = os.environ.get("INTENT_SIDECAR_URL", "http://127.0.0.1:8787") + "/v1/publish"
    if not url.startswith("http://"):
        raise ValueError("INTENT_SIDECAR_URL must be an http:// URL")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return str(json.load(resp)["id"])


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = False  # SIGTERM waits for in-flight requests
    server.block_on_close = True

    def stop(_signum: int, _frame: object) -> None:
        # shutdown() must not run on the serving thread; in-flight requests finish.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write(f"python handler listening on {host}:{port}\n")
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
