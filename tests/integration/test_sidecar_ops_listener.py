"""The sidecar's ops listener (``--ops-listen``): probes, state, metrics and a token-guarded
drain for the kubelet, the operator and Prometheus; never publish, KV or intents.

Real processes throughout: ``intent-fleet bus``, ``intent-fleet sidecar`` and the
counting handler, all stopped by PID. The ops listener binds 127.0.0.1 here (the
operator passes 0.0.0.0); what it serves does not depend on the address.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.busproc import BusProcess
from tests.support.handlers import CountingHandler
from tests.support.lifecycle import BusHttp, LifecycleStack, in_flight, wait_until
from tests.support.sidecarproc import SidecarProcess, free_port, start_sidecar

GOAL = "ops"
HEADER = "X-Intent-Drain-Token"
TOKEN = "a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LifecycleStack]:
    with LifecycleStack(tmp_path) as s:
        yield s


def _sidecar(
    stack: LifecycleStack, bus: BusProcess, handler: CountingHandler, env: dict[str, str]
) -> SidecarProcess:
    """A sidecar configured through the environment, as the operator renders it."""
    proc = start_sidecar(
        stack.tmp / f"sidecar-{len(stack.sidecars)}",
        bus_url=bus.url,
        api_key=bus.admin_secret,
        goal=GOAL,
        app_port=handler.port,
        env=env,
    )
    stack.sidecars.append(proc)
    proc.wait_ready()
    return proc


def _ops_sidecar(
    stack: LifecycleStack, *, token: str | None = TOKEN
) -> tuple[BusProcess, BusHttp, CountingHandler, SidecarProcess, str]:
    bus = stack.bus()
    http = BusHttp(bus.url, admin_secret=bus.admin_secret)
    handler = stack.handler()
    port = free_port()
    env = {"INTENT_OPS_LISTEN": f"127.0.0.1:{port}"}
    if token is not None:
        env["INTENT_DRAIN_TOKEN"] = token
    sidecar = _sidecar(stack, bus, handler, env)
    return bus, http, handler, sidecar, f"http://127.0.0.1:{port}"


def _call(
    url: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    body: object | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if kind.startswith("application/json") else raw.decode()


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if st != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, packed), int(port_hex, 16)))
    return found


def _assert_token_never_logged(sidecar: SidecarProcess, *tokens: str) -> None:
    logs = sidecar.logs()
    for token in tokens:
        assert token not in logs


def _handled(handler: CountingHandler) -> set[str]:
    return {r["intent_id"] for r in handler.lines()}


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listeners from /proc")
def test_without_ops_listen_only_the_local_api_listens(stack: LifecycleStack) -> None:
    bus = stack.bus()
    handler = stack.handler()
    sidecar = _sidecar(stack, bus, handler, {})
    api_port = int(sidecar.api_url.rsplit(":", 1)[1])
    assert _listening(sidecar.proc.pid) == {("127.0.0.1", api_port)}


def test_ops_listener_serves_probes_state_and_metrics_but_not_the_keyed_routes(
    stack: LifecycleStack,
) -> None:
    _bus, http, handler, sidecar, ops = _ops_sidecar(stack)
    if Path("/proc/net/tcp").exists():
        api_port = int(sidecar.api_url.rsplit(":", 1)[1])
        ops_port = int(ops.rsplit(":", 1)[1])
        assert _listening(sidecar.proc.pid) == {("127.0.0.1", api_port), ("127.0.0.1", ops_port)}

    assert _call(ops + "/healthz") == (200, {"ok": True})
    assert _call(ops + "/readyz") == (200, {"ready": True})
    status, state = _call(ops + "/v1/state")
    assert status == 200, state
    assert state["in_flight"] == 0
    assert state["concurrency"] == 4
    assert state["draining"] is False
    assert state["handler_ready"] is True
    assert state["idle_seconds"] >= 0
    assert state["goal"] == GOAL and state["namespace"] == "default" and state["worker_id"]
    # The same figures the local API reports (one set of handlers behind both).
    assert set(state) == set(sidecar.get("/v1/state")[1])
    status, text = _call(ops + "/metrics")
    assert status == 200 and "intent_sidecar_in_flight" in text, text

    # Nothing that acts with the API key answers on the ops listener.
    for method, path, body in (
        ("POST", "/v1/publish", {"goal": GOAL, "payload": {"n": "ops"}}),
        ("GET", "/v1/kv/k", None),
        ("PUT", "/v1/kv/k", {"value": 1}),
        ("GET", "/v1/intents/x", None),
    ):
        status, doc = _call(ops + path, method, body=body)
        assert status == 404, (method, path, doc)
    assert http.stats(GOAL)["ready"] == 0
    assert not _handled(handler)

    # One intent, in flight: the ops listener's state sees it.
    intent_id = http.publish(GOAL, {"sleep": 1.0})
    wait_until(
        lambda: _call(ops + "/v1/state")[1]["in_flight"] == 1,
        timeout=10,
        what="in flight on the ops listener",
    )
    assert _call(ops + "/v1/state")[1]["idle_seconds"] == 0
    wait_until(lambda: intent_id in _handled(handler), timeout=10, what="the intent handled")


@pytest.mark.parametrize("configured", [True, False], ids=["wrong-token", "no-token-configured"])
def test_drain_on_the_ops_listener_without_the_right_token_is_refused_and_claiming_goes_on(
    stack: LifecycleStack, configured: bool
) -> None:
    _bus, http, handler, sidecar, ops = _ops_sidecar(stack, token=TOKEN if configured else None)
    wrong = "0" * len(TOKEN)
    attempts = [
        ("GET", {}),
        ("POST", {}),
        ("GET", {HEADER: wrong}),
        ("POST", {HEADER: wrong}),
        ("GET", {HEADER: ""}),
        # Not configured: even the operator's token opens nothing.
        ("GET", {HEADER: TOKEN[:-1]} if configured else {HEADER: TOKEN}),
    ]
    for method, headers in attempts:
        status, doc = _call(ops + "/v1/drain", method, headers=headers)
        assert status == 403, (method, headers, doc)
        assert set(doc) == {"error"}, doc
        assert HEADER in doc["error"]["message"], doc

    status, state = _call(ops + "/v1/state")
    assert state["draining"] is False, state
    assert _call(ops + "/readyz")[0] == 200
    # Still claiming: new work is taken and done.
    ids = [http.publish(GOAL, {"n": n}) for n in range(3)]
    wait_until(
        lambda: _handled(handler) >= set(ids), timeout=10, what="intents handled after refusals"
    )
    _assert_token_never_logged(sidecar, TOKEN, wrong, TOKEN[:-1])


def test_get_drain_with_the_token_blocks_until_in_flight_work_ends_then_claims_nothing(
    stack: LifecycleStack,
) -> None:
    job = 1.0
    _bus, http, handler, sidecar, ops = _ops_sidecar(stack)
    first = http.publish(GOAL, {"sleep": job})
    wait_until(lambda: in_flight(sidecar) == 1, timeout=10, what="the intent in flight")

    asked = time.time()
    # What the kubelet's httpGet preStop hook sends.
    status, body = _call(ops + "/v1/drain", headers={HEADER: TOKEN})
    answered = time.time()
    assert status == 200, body
    assert body["drained"] is True, body
    lines = handler.lines()
    assert [r["intent_id"] for r in lines] == [first]
    # It blocked until the work was done, and answered soon after.
    assert lines[0]["t_end"] <= answered, (answered, lines)
    assert answered - asked < job + 2.0
    assert http.intent(first)["status"] == "fulfilled"

    status, state = _call(ops + "/v1/state")
    assert (state["draining"], state["in_flight"]) == (True, 0), state
    assert _call(ops + "/readyz")[0] == 503
    # Claims nothing more: a late intent stays open with no attempt spent.
    late = http.publish(GOAL, {"n": "late"})
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert http.intent(late)["status"] in ("open", "claimed")
        time.sleep(0.05)
    doc = http.intent(late)
    assert (doc["status"], doc["claim_attempts"]) == ("open", 0), doc
    assert late not in _handled(handler)
    # A second hook call (the kubelet may retry) answers at once.
    status, body = _call(ops + "/v1/drain", "POST", headers={HEADER: TOKEN}, timeout=5)
    assert status == 200 and body["drained"] is True, body
    # Drained is not gone: both listeners serve until SIGTERM, which exits 0 at once.
    assert _call(ops + "/healthz")[0] == 200
    assert sidecar.get("/healthz")[0] == 200
    assert sidecar.stop(timeout=20) == 0, sidecar.logs()[-4000:]
    _assert_token_never_logged(sidecar, TOKEN)
