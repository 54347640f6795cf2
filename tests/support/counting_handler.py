"""A handler that counts what it is given (stdlib only, run as a process).

    python counting_handler.py --port P --record FILE [--record-env]

Every POST sleeps ``payload["sleep"]`` seconds (0 when absent), answers 200
``{"ok": true, "intent_id": ..., "pid": ...}`` and appends one JSON line to the
record file, flushed at once::

    {"intent_id", "attempt", "t_start", "t_end", "pid"}

plus ``"env"`` (the sorted *names* of its environment variables, never their
values) with ``--record-env``. Times are ``time.time()``. The moment a delivery arrives, its
``Intent-Id`` is appended to the record's ``.arrivals`` file too, so a test can act while the
handler is still working on it. Any GET answers 200
(readiness). SIGTERM stops accepting, lets in-flight requests finish (their
lines are written), then exits 0.

:func:`tests.support.procs.read_record` parses the record file for tests, and
:func:`tests.support.handlers.start_counting_handler` starts this script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["HERE", "main"]

HERE = Path(__file__).resolve()


class _Server(ThreadingHTTPServer):
    # Request threads are joined on close, so SIGTERM lets in-flight work finish.
    daemon_threads = False
    block_on_close = True
    record: Any
    arrivals: Any
    record_env: bool
    lock: threading.Lock


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # One request per connection: no idle keep-alive thread outlives a SIGTERM.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, doc: object) -> None:
        body = json.dumps(doc).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller went away (a killed sidecar): the line is written already

    def do_GET(self) -> None:
        self._answer(200, {"ok": True})

    def do_POST(self) -> None:
        t_start = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        delay = payload.get("sleep", 0) if isinstance(payload, dict) else 0
        with self.server.lock:
            self.server.arrivals.write(f"{self.headers.get('Intent-Id')}\n")
            self.server.arrivals.flush()
        if delay:
            time.sleep(float(delay))
        intent_id = self.headers.get("Intent-Id")
        attempt = self.headers.get("Intent-Attempt")
        line: dict[str, Any] = {
            "intent_id": intent_id,
            "attempt": int(attempt) if attempt and attempt.isdigit() else attempt,
            "t_start": t_start,
            "t_end": time.time(),
            "pid": os.getpid(),
        }
        if self.server.record_env:
            line["env"] = sorted(os.environ)
        with self.server.lock:
            self.server.record.write(json.dumps(line) + "\n")
            self.server.record.flush()
        self._answer(200, {"ok": True, "intent_id": intent_id, "pid": os.getpid()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--record-env", action="store_true")
    args = parser.parse_args()

    server = _Server(("127.0.0.1", args.port), _Handler)
    server.record = args.record.open("a", encoding="utf-8")
    server.arrivals = args.record.with_suffix(".arrivals").open("a", encoding="utf-8")
    server.record_env = args.record_env
    server.lock = threading.Lock()

    def on_term(_signum: int, _frame: object) -> None:
        # shutdown() waits for serve_forever to return: call it off this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"counting handler listening on {args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()  # joins the request threads: in-flight work finishes
        server.record.close()
        server.arrivals.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
