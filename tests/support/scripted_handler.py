"""A handler whose answer is scripted by the intent payload (stdlib only, run as a process).

    python scripted_handler.py --port P --record FILE [--health-path /healthz]
                               [--health-fail-file F]

The payload (a JSON object) says what to answer:

- ``{"status": 200, "json": {...}}``: that JSON, ``application/json``
- ``{"status": 200, "text": "..."}``: ``text/plain; charset=utf-8``
- ``{"status": 200, "raw": "..."}``: that body with no Content-Type at all
- ``{"status": 204}`` / ``{"status": 200}``: empty body
- ``{"status": 200, "content_type": "application/octet-stream", "raw_hex": "..."}``
- ``{"status": 200, "bytes": N}``: a JSON string body of exactly N bytes
- ``{"status": 429|503, "retry_after": "0.2", "times": K}``: busy for the first K
  deliveries of this Intent-Id, then 200 with ``{"deliveries": K+1}``
- ``{"status": 4xx|5xx, "body": "..."}``: that text as the error body
- ``{"status": 3xx, "location": URL}``: a redirect there
- ``{"sleep": S}``: sleep S seconds before answering (combines with the above)
- ``{"drop": true}``: close the socket without answering
- ``{"exit": true}``: answer 200, then the process exits

Every request appends one JSON line to the record file: method, path, the
``Intent-*`` headers and ``Idempotency-Key``, every header name and value,
the time, and the sorted *names* of the environment variables (never their
values) with flags for names that look like a bus credential. Tests read it to
check what the sidecar delivered and that the handler never saw the key.

Health (GET on ``--health-path``): 200, or 503 while ``--health-fail-file`` exists.

:func:`tests.support.handlers.start_handler` starts this file as a child process and
waits until it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["HERE", "main"]

HERE = Path(__file__).resolve()

_INTENT_HEADERS = (
    "Intent-Id",
    "Intent-Goal",
    "Intent-Namespace",
    "Intent-Attempt",
    "Intent-Deadline",
    "Idempotency-Key",
)


def _env_report() -> dict[str, Any]:
    names = sorted(os.environ)
    return {
        "env_names": names,
        "env_intent_api": any(n.startswith("INTENT_API") for n in names),
        "env_credential_names": [
            n for n in names if "API_KEY" in n.upper() or "ADMIN_SECRET" in n.upper()
        ],
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, args: argparse.Namespace) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.args = args
        self.lock = threading.Lock()
        self.deliveries: dict[str, int] = {}
        self.env = _env_report()

    def record(self, doc: dict[str, Any]) -> None:
        line = json.dumps(doc, sort_keys=True) + "\n"
        with self.lock, open(self.args.record, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def count(self, intent_id: str) -> int:
        with self.lock:
            n = self.deliveries.get(intent_id, 0) + 1
            self.deliveries[intent_id] = n
            return n


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: bytes = b"", content_type: str | None = None, **headers: str
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 204:
            self.wfile.write(body)
        self.wfile.flush()

    def _record(self, body: bytes) -> None:
        doc: dict[str, Any] = {
            "time": time.time(),
            "pid": os.getpid(),
            "method": self.command,
            "path": self.path,
            "headers": dict(self.headers.items()),
            "header_names": sorted(self.headers.keys()),
            "body_bytes": len(body),
            **self.server.env,
        }
        for name in _INTENT_HEADERS:
            doc[name] = self.headers.get(name)
        self.server.record(doc)

    def do_GET(self) -> None:
        self._record(b"")
        args = self.server.args
        if args.health_path and self.path == args.health_path:
            failing = args.health_fail_file and Path(args.health_fail_file).exists()
            self._send(503 if failing else 200, b"unhealthy" if failing else b"ok", "text/plain")
            return
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._record(body)
        try:
            script = json.loads(body) if body else {}
        except ValueError:
            script = {}
        if not isinstance(script, dict):
            script = {}
        intent_id = self.headers.get("Intent-Id") or ""
        delivery = self.server.count(intent_id)
        if script.get("sleep"):
            time.sleep(float(script["sleep"]))
        if script.get("drop"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if script.get("exit"):
            self.close_connection = True
            self._send(200, b'{"bye": true}', "application/json", Connection="close")
            self.connection.shutdown(socket.SHUT_RDWR)
            os._exit(0)
        status = int(script.get("status", 200))
        if status in (429, 503):
            if delivery <= int(script.get("times", 1 << 30)):
                extra = {}
                if script.get("retry_after") is not None:
                    extra["Retry_After"] = str(script["retry_after"])
                self._send(status, b"busy", "text/plain", **extra)
                return
            reply = json.dumps({"deliveries": delivery}).encode()
            self._send(200, reply, "application/json")
            return
        if "location" in script:
            self._send(status, b"", None, Location=str(script["location"]))
        elif "json" in script:
            self._send(status, json.dumps(script["json"]).encode(), "application/json")
        elif "text" in script:
            self._send(status, script["text"].encode(), "text/plain; charset=utf-8")
        elif "raw_hex" in script:
            self._send(status, bytes.fromhex(script["raw_hex"]), script.get("content_type"))
        elif "raw" in script:
            self._send(status, script["raw"].encode(), script.get("content_type"))
        elif "bytes" in script:
            n = int(script["bytes"])
            self._send(status, b'"' + b"x" * (n - 2) + b'"', "application/json")
        elif "body" in script:
            self._send(status, script["body"].encode(), "text/plain; charset=utf-8")
        else:
            self._send(status)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="a handler scripted by its intent payloads")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--health-path", default="")
    p.add_argument("--health-fail-file", default="")
    args = p.parse_args(argv)
    server = _Server(args.port, args)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"scripted handler listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
