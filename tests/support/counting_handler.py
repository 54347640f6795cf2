"""A handler that counts what it is given (stdlib only, run as a process).

    python counting_handler.py --port P --record FILE [--record-env]

Every POST sleeps ``payload["sleep"]`` seconds (0 when absent), answers 200
``{"ok": true, "intent_id": ..., "pid": ...}`` and appends one JSON line to the
record file, flushed at once::

    {"intent_id", "attempt", "t_start", "t_end", "pid"}

plus ``"env"`` (the sorted *names* of its environment variables, never their
values) with ``--record-env``. Times are ``time.time()``. Any GET answers 200
(readiness). SIGTERM stops accepting, lets in-flight requests finish (their
lines are written), then exits 0.

:func:`read_record` parses the record file for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["CountingHandler", "read_record", "start_counting_handler"]

HERE = Path(__file__).resolve()


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a record file (a line being written is skipped)."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


@dataclass
class CountingHandler:
    """A running counting handler (for tests); stop it by PID."""

    proc: subprocess.Popen[bytes]
    port: int
    record: Path

    def lines(self) -> list[dict[str, Any]]:
        return read_record(self.record)

    def stop(self, *, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL if it does not go); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_counting_handler(port: int, record: Path, *, timeout: float = 10.0) -> CountingHandler:
    """Start this file as a child process and wait until it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "--port", str(port), "--record", str(record)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"counting handler exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return CountingHandler(proc=proc, port=port, record=record)
        except OSError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"counting handler did not listen on {port} within {timeout} s")


class _Server(ThreadingHTTPServer):
    # Request threads are joined on close, so SIGTERM lets in-flight work finish.
    daemon_threads = False
    block_on_close = True
    record: Any
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
