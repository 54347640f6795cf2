"""The example handlers on their own: every behaviour of the shared example contract.

Each example (Python, Node.js, Go) runs as a real process on a free port and is
driven over HTTP the way the sidecar drives it. The Go example is built here with
``go build``; a missing ``go`` or ``node`` fails the test rather than skipping it
(both are part of the project's toolchain). A small stdlib server stands in for the
sidecar's ``/v1/publish``; going through a real sidecar and bus is the job of
``test_examples_run.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.lifecycle import wait_until
from tests.support.procs import Child, free_port, spawn

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "handlers"
LANGS = ["python", "node", "go"]


# --- processes -------------------------------------------------------------------


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    assert go, "Go is required to build the Go example (it is part of this project's toolchain)"
    binary = tmp_path_factory.mktemp("go-example") / "handler"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=EXAMPLES / "go",
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"go build failed:\n{built.stdout}{built.stderr}"
    return binary


def _command(lang: str, request: pytest.FixtureRequest) -> list[str]:
    if lang == "python":
        return [sys.executable, str(EXAMPLES / "python" / "handler.py")]
    if lang == "node":
        node = shutil.which("node")
        assert node, "Node.js is required for the Node example (part of this project's toolchain)"
        return [node, str(EXAMPLES / "node" / "handler.js")]
    return [str(request.getfixturevalue("go_binary"))]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Handler(Child):
    lang: str = ""
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Reply:
        return _send(urllib.request.Request(self.url + path))

    def post(
        self,
        payload: object = None,
        *,
        raw: bytes | None = None,
        intent_id: str = "",
        attempt: int = 1,
    ) -> Reply:
        intent_id = intent_id or new_id()
        body = raw if raw is not None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + "/", data=body, headers=intent_headers(intent_id, attempt), method="POST"
        )
        return _send(req)


def _unread_bytes(server_port: int, client_port: int) -> int | None:
    """Bytes of the connection client_port -> server_port that the server has not read yet,
    from the kernel's socket tables; None while the connection is not there."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if (
                int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return int(queues.split(":")[1], 16)
    return None


def new_id() -> str:
    return uuid.uuid4().hex


def intent_headers(intent_id: str, attempt: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Intent-Id": intent_id,
        "Intent-Goal": "greet",
        "Intent-Namespace": "default",
        "Intent-Attempt": str(attempt),
        "Intent-Deadline": str(int(time.time()) + 60),
        "Idempotency-Key": intent_id,
    }


def _send(req: urllib.request.Request, timeout: float = 10) -> Reply:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        headers = {k.lower(): v for k, v in exc.headers.items()}
        return Reply(exc.code, headers, exc.read())


def start_handler(
    lang: str, request: pytest.FixtureRequest, log_dir: Path, *, sidecar_url: str
) -> Handler:
    port = free_port()
    log_path = log_dir / f"{lang}-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    env.update(PORT=str(port), HOST="127.0.0.1", INTENT_SIDECAR_URL=sidecar_url)
    handler = Handler(spawn(_command(lang, request), log_path, env=env), log_path, lang, port)
    deadline = time.monotonic() + 15
    while True:
        assert handler.alive(), f"{lang} handler exited early:\n{handler.logs()}"
        try:
            if handler.get("/healthz").status == 200:
                return handler
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            handler.stop(timeout=10)
            raise AssertionError(f"{lang} handler not healthy in 15 s:\n{handler.logs()}")
        time.sleep(0.05)


# --- a stand-in for the sidecar's local API -----------------------------------------


@dataclass
class FakeSidecar:
    url: str
    published: list[object] = field(default_factory=list)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[FakeSidecar]:
    fake = FakeSidecar(url="")

    class Api(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/v1/publish":
                fake.published.append(doc)
                status, body = 201, json.dumps({"id": f"pub-{len(fake.published)}"}).encode()
            else:
                status, body = 404, b'{"error": "not_found"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", params=LANGS)
def handler(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sidecar: FakeSidecar
) -> Iterator[Handler]:
    running = start_handler(
        request.param, request, tmp_path_factory.mktemp("handler"), sidecar_url=sidecar.url
    )
    try:
        yield running
    finally:
        running.stop()


# --- the behaviours -----------------------------------------------------------------


def test_healthz_answers_200(handler: Handler) -> None:
    assert handler.get("/healthz").status == 200


def test_greets_with_json_naming_language_and_attempt(handler: Handler) -> None:
    reply = handler.post({"name": "Ada"}, attempt=3)
    assert reply.status == 200, reply
    assert reply.content_type == "application/json"
    assert reply.json() == {"greeting": "Hello, Ada!", "lang": handler.lang, "attempt": 3}


def test_text_payload_answers_text_plain(handler: Handler) -> None:
    reply = handler.post({"name": "Grace", "text": True})
    assert (reply.status, reply.content_type, reply.body) == (200, "text/plain", b"Hello, Grace!")


def test_fail_answers_500_with_the_text(handler: Handler) -> None:
    reply = handler.post({"name": "x", "fail": "disk on fire"})
    assert (reply.status, reply.body.decode()) == (500, "disk on fire")


def test_reject_answers_422_with_the_text(handler: Handler) -> None:
    reply = handler.post({"name": "x", "reject": "no such customer"})
    assert (reply.status, reply.body.decode()) == (422, "no such customer")


def test_busy_first_is_503_once_per_intent_then_200(handler: Handler) -> None:
    first_id, other_id = new_id(), new_id()
    payload = {"name": "Ken", "busy_first": True}

    busy = handler.post(payload, intent_id=first_id)
    assert busy.status == 503
    assert busy.headers.get("retry-after") == "1"

    again = handler.post(payload, intent_id=first_id, attempt=1)
    assert again.status == 200
    assert again.json() == {"greeting": "Hello, Ken!", "lang": handler.lang, "attempt": 1}

    assert handler.post(payload, intent_id=other_id).status == 503  # remembered per intent id
    assert handler.post(payload, intent_id=first_id).status == 200


def test_invalid_json_answers_400_saying_so(handler: Handler) -> None:
    reply = handler.post(raw=b'{"name": "Ada",')
    assert reply.status == 400
    assert "not valid JSON" in reply.body.decode()


def test_publish_goes_through_the_sidecar_and_names_the_id(
    handler: Handler, sidecar: FakeSidecar
) -> None:
    child = {"goal": "greet", "payload": {"name": f"child-of-{handler.lang}"}}
    reply = handler.post({"name": "Linus", "publish": child})
    assert reply.status == 200, reply
    result = reply.json()
    assert isinstance(result, dict)
    assert result["greeting"] == "Hello, Linus!"
    published = result["published"]
    assert published == f"pub-{sidecar.published.index(child) + 1}"


def test_logs_one_line_per_request_with_the_id_never_the_payload(handler: Handler) -> None:
    intent_id, secret = new_id(), f"secret-{new_id()}"
    assert handler.post({"name": secret}, intent_id=intent_id).status == 200
    bad_id = new_id()
    assert handler.post(raw=b"{nope", intent_id=bad_id).status == 400

    deadline = time.monotonic() + 5
    while bad_id not in handler.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = handler.logs()
    assert [line for line in log.splitlines() if intent_id in line], log
    assert len([line for line in log.splitlines() if intent_id in line]) == 1, log
    assert len([line for line in log.splitlines() if bad_id in line]) == 1, log
    assert secret not in log


# --- shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_sigterm_stops_accepting_finishes_in_flight_and_exits_0(
    lang: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    handler = start_handler(lang, request, tmp_path, sidecar_url="http://127.0.0.1:9")
    try:
        # Keep-alive connections as the sidecar's pool keeps them: one idle, one in flight.
        # Neither may hold up the exit once the in-flight request is answered.
        idle = http.client.HTTPConnection("127.0.0.1", handler.port, timeout=10)
        idle.request("POST", "/", body=b'{"name": "idle"}', headers=intent_headers(new_id(), 1))
        assert idle.getresponse().read()
        busy = http.client.HTTPConnection("127.0.0.1", handler.port, timeout=10)
        in_flight: dict[str, object] = {}

        def slow_request() -> None:
            started = time.monotonic()
            try:
                body = json.dumps({"name": "Barbara", "sleep": 1.5}).encode()
                busy.request("POST", "/", body=body, headers=intent_headers(new_id(), 1))
                resp = busy.getresponse()
                in_flight["reply"] = Reply(resp.status, {}, resp.read())
            except OSError as exc:
                in_flight["error"] = exc
            in_flight["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=slow_request)
        thread.start()

        def read_by_the_handler() -> bool:
            # Sent, and no byte of it left unread on the handler's side: it is working on it.
            if busy.sock is None:
                return False
            return _unread_bytes(handler.port, busy.sock.getsockname()[1]) == 0

        wait_until(read_by_the_handler, timeout=5, what="the handler to read the request")
        assert thread.is_alive()
        handler.proc.send_signal(signal.SIGTERM)

        refused = False
        while thread.is_alive() and not refused:
            try:
                handler.get("/healthz")
            except (urllib.error.URLError, ConnectionError):
                refused = True
            time.sleep(0.05)
        assert refused, "still accepting connections after SIGTERM"

        thread.join(timeout=10)
        reply = in_flight.get("reply")
        assert isinstance(reply, Reply), f"in-flight request cut off: {in_flight.get('error')!r}"
        assert reply.status == 200, reply
        assert reply.json() == {"greeting": "Hello, Barbara!", "lang": lang, "attempt": 1}
        assert float(str(in_flight["seconds"])) >= 1.0  # it really slept

        # Exits promptly once the in-flight request is done, idle connection or not.
        assert handler.proc.wait(timeout=4) == 0, handler.logs()
        idle.close()
        busy.close()
    finally:
        handler.stop()
