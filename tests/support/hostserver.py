"""A tiny HTTP server on the host that records what pods send it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    """Requests received: (client address, path), in arrival order."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    #: The headers of each request, in the same order.
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def everything(self) -> str:
        """Every path and header received, as one text to search for a leaked value."""
        with self.lock:
            return repr((self.requests, self.headers))

    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path in self.requests]

    def clients(self) -> list[str]:
        with self.lock:
            return [client for client, _ in self.requests]


@contextmanager
def host_server(address: str) -> Iterator[tuple[str, Seen]]:
    """Serve on ``address`` (an ephemeral port); yields the base URL and the record."""
    seen = Seen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with seen.lock:
                seen.requests.append((self.client_address[0], self.path))
                seen.headers.append(dict(self.headers.items()))
            body = b"host says hello\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
