"""An intent-fleet handler in plain Python (standard library only).

The sidecar POSTs each intent's payload here; the answer decides the outcome
(2xx fulfil, 429/503 busy, other 4xx reject, 5xx fail). Payload knobs, shared
by every example handler so tests treat them alike:

    {"name": "Ada"}                  -> 200 {"greeting": "Hello, Ada!", "lang": ..., "attempt": N}
    {"text": true}                   -> 200 text/plain "Hello, <name>!"
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
import urllib.error
import urllib.request
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LANG = "python"
SEEN_MAX = 10_000  # remember this many busy_first intent ids, oldest forgotten first
SEEN_LOCK = threading.Lock()
SEEN: OrderedDict[str, None] = OrderedDict()

#: (status, content type, body, extra headers)
Answer = tuple[int, str, bytes, dict[str, str]]
TEXT = "text/plain; charset=utf-8"


def first_sighting(intent_id: str) -> bool:
    """True the first time an intent id is seen (bounded memory)."""
    with SEEN_LOCK:
        if intent_id in SEEN:
            return False
        SEEN[intent_id] = None
        if len(SEEN) > SEEN_MAX:
            SEEN.popitem(last=False)
        return True


def publish(doc: object) -> str:
    """Publish a follow-up intent through the sidecar's local API (no key needed)."""
    url = os.environ.get("INTENT_SIDECAR_URL", "http://127.0.0.1:8787").rstrip("/")
    if not url.startswith("http://"):
        raise ValueError("INTENT_SIDECAR_URL must be an http:// URL")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url + "/v1/publish",
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return str(json.load(resp)["id"])


def answer(payload: Any, intent_id: str, attempt: int) -> Answer:
    """What to say about one intent; all the example's behaviour is here."""
    if not isinstance(payload, dict):
        payload = {}
    if payload.get("busy_first") is True and first_sighting(intent_id):
        return 503, TEXT, b"busy, try again\n", {"Retry-After": "1"}
    sleep = payload.get("sleep")
    if isinstance(sleep, int | float) and not isinstance(sleep, bool) and sleep > 0:
        time.sleep(sleep)
    if "fail" in payload:
        return 500, TEXT, str(payload["fail"]).encode(), {}
    if "reject" in payload:
        return 422, TEXT, str(payload["reject"]).encode(), {}
    name = str(payload.get("name", "world"))
    if payload.get("text") is True:
        return 200, TEXT, f"Hello, {name}!".encode(), {}
    result: dict[str, Any] = {"greeting": f"Hello, {name}!", "lang": LANG, "attempt": attempt}
    if "publish" in payload:
        try:
            result["published"] = publish(payload["publish"])
        except (OSError, ValueError, KeyError) as exc:  # URLError and HTTPError are OSErrors
            return 502, TEXT, f"publish through the sidecar failed: {exc}".encode(), {}
    return 200, "application/json", json.dumps(result).encode(), {}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one connection per request, so no idle keep-alive connection can hold
    # up shutdown; on localhost the extra connect costs nothing worth measuring.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per intent is logged below, never the payload

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send((200, TEXT, b"ok\n", {}))
        else:
            self._send((404, TEXT, b"not found\n", {}))

    def do_POST(self) -> None:
        started = time.monotonic()
        intent_id = self.headers.get("Intent-Id", "-")
        attempt_header = self.headers.get("Intent-Attempt", "0")
        attempt = int(attempt_header) if attempt_header.isdigit() else 0
        reply = self._read_and_answer(intent_id, attempt)
        elapsed_ms = (time.monotonic() - started) * 1000
        sys.stderr.write(
            f"{LANG} handler: intent {intent_id} attempt {attempt} -> {reply[0]}"
            f" ({elapsed_ms:.0f} ms)\n"
        )
        self._send(reply)

    def _read_and_answer(self, intent_id: str, attempt: int) -> Answer:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return 400, TEXT, b"chunked request bodies are not supported: send Content-Length\n", {}
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 400, TEXT, b"bad Content-Length\n", {}
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            return 400, TEXT, f"payload is not valid JSON: {exc}\n".encode(), {}
        return answer(payload, intent_id, attempt)

    def _send(self, reply: Answer) -> None:
        status, ctype, body, headers = reply
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = False  # server_close() waits for in-flight requests
    server.block_on_close = True

    def stop(_signum: int, _frame: object) -> None:
        # shutdown() blocks until serve_forever() returns, so not on the serving thread.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"{LANG} handler listening on {host}:{port}\n")
    server.serve_forever(poll_interval=0.1)
    # Stop accepting (close the listening socket), then wait for in-flight requests.
    server.server_close()
    sys.stderr.write(f"{LANG} handler stopped\n")


if __name__ == "__main__":
    main()
