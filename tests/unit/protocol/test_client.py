"""BusClient against a real aiohttp server on 127.0.0.1, with sleeping recorded, not done."""

from __future__ import annotations

import random
import socket
from typing import Any

import aiohttp
import pytest

from intent_fleet.protocol import (
    BusClient,
    ClaimOutcome,
    Clock,
    Health,
    IntentBusAuthError,
    IntentBusConflictError,
    IntentBusError,
    IntentBusLeaseLostError,
    IntentBusNetworkError,
    IntentBusNotFoundError,
    IntentBusProtocolError,
    IntentBusRateLimitError,
    IntentBusServerError,
    ProtocolVersion,
    RetryPolicy,
)

from .conftest import API_KEY, T0, FakeBus, Reply, Sleeps, make_settings

RECEIPT = {"id": "i_1", "status": "published", "namespace": "default"}
CLAIM = {
    "id": "i_1",
    "namespace": "default",
    "goal": "g",
    "payload": {"n": 1},
    "claim_attempts": 1,
    "priority": 100,
    "claim_token": "ct_1",
    "claim_timeout": 60,
}
UNAVAILABLE = Reply(503, {"error": {"code": "unavailable", "message": "restarting"}})


def error(code: str, message: str = "m") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# --- signing and the wire ------------------------------------------------------------


async def test_requests_are_signed_over_the_exact_path_and_body(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/intent", Reply(201, RECEIPT))
    fake_bus.on("POST", "/claim", Reply(200, CLAIM))
    await client.publish("send email", {"to": "ops", "ü": [1, 2]}, namespace="ns.1", priority=5)
    await client.claim("a b/c&d=e", namespace="ns.1", publisher="k_1")

    publish, claim = fake_bus.seen
    assert publish.signature_ok is True
    assert publish.headers["X-API-KEY"] == API_KEY
    assert publish.headers["X-Timestamp"] == str(int(T0))
    assert publish.headers["Content-Type"] == "application/json"
    assert (
        publish.body
        == (
            '{"goal":"send email","namespace":"ns.1","payload":{"to":"ops","ü":[1,2]},'
            '"priority":5,"visibility":"private"}'
        ).encode()
    )
    assert claim.signature_ok is True
    assert claim.raw_path == "/claim?goal=a%20b%2Fc%26d%3De&namespace=ns.1&publisher=k_1"
    assert claim.body == b""


async def test_ids_and_keys_are_percent_encoded_into_the_path(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("GET", "/get/a%2Fb%20c%3F%C3%BC", Reply(200, {"value": "v"}))
    assert await client.kv_get("a/b c?ü") == "v"
    assert fake_bus.seen[0].raw_path == "/get/a%2Fb%20c%3F%C3%BC"
    assert fake_bus.seen[0].signature_ok is True


async def test_protocol_version_is_recorded_from_every_answer(
    client: BusClient, fake_bus: FakeBus
) -> None:
    assert client.protocol is None
    fake_bus.on("GET", "/status/i_1", Reply(200, {"id": "i_1", "status": "open"}, version="1.0"))
    fake_bus.on("GET", "/result/i_1", Reply(200, {"id": "i_1", "status": "open"}, version="2.1"))
    fake_bus.on("GET", "/get/k", Reply(404, error("not_found"), version=None))
    await client.status("i_1")
    assert client.protocol is ProtocolVersion.V1_1
    await client.result("i_1")
    assert client.protocol is ProtocolVersion.V2_1
    await client.kv_get("k")  # no header: what we knew stays
    assert client.protocol is ProtocolVersion.V2_1


# --- retries -----------------------------------------------------------------------


async def test_publish_retries_503_with_one_idempotency_key_and_fresh_nonces(
    client: BusClient, fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    fake_bus.on("POST", "/intent", UNAVAILABLE, UNAVAILABLE, Reply(201, RECEIPT))
    receipt = await client.publish("g", {"a": 1})
    assert receipt.id == "i_1"
    tries = fake_bus.requests_to("/intent")
    assert len(tries) == 3
    keys = {t.headers["Idempotency-Key"] for t in tries}
    assert len(keys) == 1
    assert len(keys.pop()) == 32
    assert len({t.headers["X-Nonce"] for t in tries}) == 3
    assert all(t.signature_ok for t in tries)
    assert len({t.body for t in tries}) == 1
    assert len(sleeps.delays) == 2
    policy = RetryPolicy()
    assert 0 <= sleeps.delays[0] <= policy.base_seconds
    assert 0 <= sleeps.delays[1] <= policy.base_seconds * 2


async def test_callers_idempotency_key_is_sent_on_every_try(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/intent", UNAVAILABLE, Reply(201, RECEIPT))
    await client.publish("g", {}, idempotency_key="order-77")
    assert [t.headers["Idempotency-Key"] for t in fake_bus.seen] == ["order-77", "order-77"]


async def test_each_publish_call_gets_its_own_idempotency_key(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/intent", Reply(201, RECEIPT))
    await client.publish("g", {})
    await client.publish("g", {})
    assert (
        fake_bus.seen[0].headers["Idempotency-Key"] != fake_bus.seen[1].headers["Idempotency-Key"]
    )


async def test_retry_after_is_a_floor_on_the_backoff(
    client: BusClient, fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    busy = Reply(429, error("rate_limited"), headers={"Retry-After": "7"})
    fake_bus.on("GET", "/status/i_1", busy, Reply(200, {"id": "i_1", "status": "open"}))
    await client.status("i_1")
    assert sleeps.delays == [7.0]


async def test_retries_stop_after_the_policy_attempts(
    client: BusClient, fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    fake_bus.on("GET", "/stats", UNAVAILABLE)
    with pytest.raises(IntentBusServerError) as caught:
        await client.stats()
    assert caught.value.status == 503
    assert caught.value.code == "unavailable"
    assert len(fake_bus.seen) == 3
    assert len(sleeps.delays) == 2


async def test_a_non_transient_5xx_is_not_retried(
    client: BusClient, fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    fake_bus.on("GET", "/status/i_1", Reply(501, error("not_implemented")))
    with pytest.raises(IntentBusServerError):
        await client.status("i_1")
    assert len(fake_bus.seen) == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("POST", "/claim", lambda c: c.claim("g")),
        ("POST", "/fulfill/i_1", lambda c: c.fulfill("i_1", claim_token="t")),
        ("POST", "/fail/i_1", lambda c: c.fail("i_1", claim_token="t")),
        ("POST", "/extend_claim/i_1", lambda c: c.extend("i_1", claim_token="t", seconds=30)),
    ],
)
async def test_lease_operations_are_never_retried(
    client: BusClient, fake_bus: FakeBus, sleeps: Sleeps, method: str, path: str, call: Any
) -> None:
    fake_bus.on(method, path, UNAVAILABLE, Reply(200, CLAIM))
    with pytest.raises(IntentBusServerError):
        await call(client)
    assert len(fake_bus.seen) == 1
    assert sleeps.delays == []


async def test_a_closed_port_is_a_network_error_after_retries(
    fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with BusClient(
        settings=make_settings(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=2)),
        api_key=API_KEY,
        clock=Clock(sleep=sleeps),
    ) as bus:
        with pytest.raises(IntentBusNetworkError) as caught:
            await bus.status("i_1")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientError | OSError)
    assert len(sleeps.delays) == 1


# --- status mapping ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "path", "kind"),
    [
        (401, "/status/i_1", IntentBusAuthError),
        (403, "/status/i_1", IntentBusAuthError),
        (404, "/status/i_1", IntentBusNotFoundError),
        (404, "/fulfill/i_1", IntentBusLeaseLostError),
        (404, "/fail/i_1", IntentBusLeaseLostError),
        (404, "/extend_claim/i_1", IntentBusLeaseLostError),
        (409, "/intent", IntentBusConflictError),
        (422, "/intent", IntentBusConflictError),
        (400, "/intent", IntentBusError),
        (413, "/intent", IntentBusError),
    ],
)
async def test_status_codes_map_to_the_exception_tree(
    client: BusClient, fake_bus: FakeBus, status: int, path: str, kind: type[IntentBusError]
) -> None:
    method = "GET" if path.startswith("/status") else "POST"
    fake_bus.on(method, path, Reply(status, error("some_code", "what went wrong")))
    calls = {
        "/status/i_1": lambda: client.status("i_1"),
        "/fulfill/i_1": lambda: client.fulfill("i_1", claim_token="t"),
        "/fail/i_1": lambda: client.fail("i_1", claim_token="t"),
        "/extend_claim/i_1": lambda: client.extend("i_1", claim_token="t", seconds=60),
        "/intent": lambda: client.publish("g", {}),
    }
    with pytest.raises(kind) as caught:
        await calls[path]()
    assert type(caught.value) is kind
    assert caught.value.status == status
    assert caught.value.code == "some_code"
    assert "what went wrong" in str(caught.value)


async def test_rate_limit_carries_retry_after(fake_bus: FakeBus, sleeps: Sleeps) -> None:
    fake_bus.on("POST", "/intent", Reply(429, error("rate_limited"), headers={"Retry-After": "12"}))
    async with BusClient(
        settings=make_settings(fake_bus.url, retry=RetryPolicy(attempts=1)),
        api_key=API_KEY,
        clock=Clock(sleep=sleeps),
    ) as bus:
        with pytest.raises(IntentBusRateLimitError) as caught:
            await bus.publish("g", {})
    assert caught.value.retry_after == 12.0
    assert caught.value.status == 429


async def test_non_json_error_bodies_are_quoted_truncated(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/claim", Reply(502, body=b"<html>" + b"x" * 1000, version=None))
    with pytest.raises(IntentBusServerError) as caught:
        await client.claim("g")
    assert caught.value.code is None
    assert "<html>xxx" in str(caught.value)
    assert len(caught.value.message) < 300


async def test_redirects_are_not_followed(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("GET", "/status/i_1", Reply(302, headers={"Location": "http://example.invalid/"}))
    with pytest.raises(IntentBusError, match="redirects are not followed"):
        await client.status("i_1")
    assert len(fake_bus.seen) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, body=b"{not json"),
        Reply(200, body=b""),
        Reply(200, {"id": 5, "goal": "g", "payload": {}}),
        Reply(200, ["not", "an", "object"]),
    ],
    ids=["broken JSON", "empty body", "id not a string", "list"],
)
async def test_malformed_answers_are_protocol_errors(
    client: BusClient, fake_bus: FakeBus, reply: Reply
) -> None:
    fake_bus.on("POST", "/claim", reply)
    with pytest.raises(IntentBusProtocolError):
        await client.claim("g")


# --- claim ------------------------------------------------------------------------


async def test_empty_claim_returns_the_retry_after(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("POST", "/claim", Reply(204, headers={"Retry-After": "1"}))
    assert await client.claim("g") == ClaimOutcome(intent=None, retry_after=1.0)


async def test_claim_sends_worker_headers_and_returns_the_intent(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/claim", Reply(200, CLAIM))
    outcome = await client.claim("g", worker_id="w-1", capabilities=["gpu", " cpu ", ""])
    assert outcome.intent is not None
    assert outcome.intent.claim_token == "ct_1"
    assert outcome.retry_after is None
    seen = fake_bus.seen[0]
    assert seen.headers["X-Worker-ID"] == "w-1"
    assert seen.headers["X-Worker-Capabilities"] == "gpu,cpu"
    assert seen.raw_path == "/claim?goal=g"


async def test_claim_wait_is_sent_and_capped(fake_bus: FakeBus) -> None:
    fake_bus.on("POST", "/claim", Reply(204, headers={"Retry-After": "1"}))
    async with BusClient(
        settings=make_settings(fake_bus.url, max_wait_seconds=5.0), api_key=API_KEY
    ) as bus:
        await bus.claim("g", wait=2)
        await bus.claim("g", wait=100)
    assert [s.raw_path for s in fake_bus.seen] == ["/claim?goal=g&wait=2", "/claim?goal=g&wait=5.0"]


async def test_claim_wait_extends_the_request_timeout(fake_bus: FakeBus) -> None:
    # The one test that lets real time pass: a timeout can only be shown by
    # outlasting it. The bus holds the answer 0.3 s; the timeout is 0.1 s.
    fake_bus.on("POST", "/claim", Reply(200, CLAIM, hold=0.3))
    async with BusClient(
        settings=make_settings(fake_bus.url, request_timeout=0.1), api_key=API_KEY
    ) as bus:
        with pytest.raises(IntentBusNetworkError, match="TimeoutError"):
            await bus.claim("g")
        outcome = await bus.claim("g", wait=5)
    assert outcome.intent is not None


async def test_arguments_are_checked_before_anything_is_sent(
    client: BusClient, fake_bus: FakeBus
) -> None:
    bad_calls = [
        client.publish("", {}),
        client.publish("g", {}, visibility="secret"),
        client.publish("g", {}, priority=1001),
        client.publish("g", {}, priority=True),  # type: ignore[arg-type]
        client.publish("g", {}, delay=-1),
        client.publish("g", {}, max_attempts=0),
        client.publish("g", {}, max_attempts=21),
        client.publish("g", {}, namespace="bad ns"),
        client.publish("g", {1, 2}),
        client.claim("g", wait=-1),
        client.fulfill("i", result=3, result_type="text"),
        client.fulfill("i", result_type="yaml"),
        client.kv_set("k", "v", ttl=0),
        client.status(""),
    ]
    for call in bad_calls:
        with pytest.raises(IntentBusError):
            await call
    assert fake_bus.seen == []


# --- the other operations -------------------------------------------------------------


async def test_publish_sends_only_the_options_given(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("POST", "/intent", Reply(201, RECEIPT))
    await client.publish("g", None, visibility="public", delay=0, target_worker="w")
    assert fake_bus.seen[0].json() == {
        "goal": "g",
        "payload": None,
        "visibility": "public",
        "delay": 0,
        "target_worker": "w",
    }


async def test_lease_calls(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on(
        "POST", "/extend_claim/i_1", Reply(200, {"id": "i_1", "ok": True, "extended_by": 120})
    )
    fake_bus.on("POST", "/fail/i_1", Reply(200, {"id": "i_1", "ok": True, "status": "dead"}))
    fake_bus.on("POST", "/fulfill/i_1", Reply(200, {"id": "i_1", "ok": True}))
    fake_bus.on("POST", "/release/i_1", Reply(200, {"id": "i_1", "ok": True, "status": "open"}))
    assert await client.extend("i_1", claim_token="ct", seconds=120) == 120
    assert await client.fail("i_1", claim_token="ct", error="boom") == "dead"
    await client.fulfill("i_1", claim_token="ct", result="done", result_type="text")
    await client.fulfill("i_1")
    await client.fulfill("i_1", result=None)
    await client.release("i_1", claim_token="ct")
    bodies = [s.json() for s in fake_bus.seen]
    assert bodies == [
        {"claim_token": "ct", "seconds": 120},
        {"claim_token": "ct", "error": "boom"},
        {"claim_token": "ct", "result": "done", "result_type": "text"},
        None,
        {"result": None, "result_type": "json"},
        {"claim_token": "ct"},
    ]


async def test_extend_without_extended_by_is_a_protocol_error(
    client: BusClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/extend_claim/i_1", Reply(200, {"ok": True}))
    with pytest.raises(IntentBusProtocolError, match="extended_by"):
        await client.extend("i_1", claim_token="ct", seconds=60)


async def test_kv(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("POST", "/set/cfg", UNAVAILABLE, Reply(200, {"ok": True}))
    fake_bus.on("GET", "/get/missing", Reply(404, error("not_found")))
    await client.kv_set("cfg", {"v": 2}, ttl=60)
    assert await client.kv_get("missing") is None
    sets = fake_bus.requests_to("/set/cfg")
    assert [s.json() for s in sets] == [{"ttl": 60, "value": {"v": 2}}] * 2
    assert sets[0].headers["Idempotency-Key"] == sets[1].headers["Idempotency-Key"]


async def test_stats_query_and_parse(client: BusClient, fake_bus: FakeBus) -> None:
    goal = {
        "namespace": "n",
        "goal": "g",
        "ready": 4,
        "delayed": 0,
        "claimed": 1,
        "dead": 0,
        "oldest_ready_age_seconds": 2.5,
    }
    fake_bus.on("GET", "/stats", Reply(200, {"ts": T0, "goals": [goal]}))
    stats = await client.stats(namespace="n", goal="g")
    assert stats.goals[0].ready == 4
    assert fake_bus.seen[0].raw_path == "/stats?goal=g&namespace=n"


async def test_health_of_a_v2_bus_is_fetched_once(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on(
        "GET",
        "/health",
        Reply(
            200, {"ok": True, "version": "2.1", "protocol": "2.1", "features": ["long_poll_claim"]}
        ),
    )
    assert await client.protocol_version() is ProtocolVersion.V2_1
    assert await client.supports("long_poll_claim")
    assert not await client.supports("batch_claim")
    assert len(fake_bus.seen) == 1


async def test_health_of_a_v1_bus_without_the_route(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("GET", "/health", Reply(404, body=b"Not Found", version="1.0"))
    assert await client.health() == Health(protocol=ProtocolVersion.V1_1)
    assert await client.protocol_version() is ProtocolVersion.V1_1
    assert not await client.supports("claim_tokens")


async def test_a_silent_bus_is_taken_for_v1(client: BusClient, fake_bus: FakeBus) -> None:
    fake_bus.on("GET", "/health", Reply(404, body=b"", version=None))
    assert await client.protocol_version() is ProtocolVersion.V1_1


# --- sessions ---------------------------------------------------------------------------


async def test_an_injected_session_is_left_open(fake_bus: FakeBus) -> None:
    fake_bus.on("GET", "/status/i_1", Reply(200, {"id": "i_1", "status": "open"}))
    async with aiohttp.ClientSession() as session:
        async with BusClient(
            settings=make_settings(fake_bus.url), api_key=API_KEY, session=session
        ) as bus:
            await bus.status("i_1")
        assert not session.closed
        with pytest.raises(IntentBusError, match="closed"):
            await bus.status("i_1")


async def test_an_own_session_is_created_lazily_and_closed(fake_bus: FakeBus) -> None:
    fake_bus.on("GET", "/status/i_1", Reply(200, {"id": "i_1", "status": "open"}))
    bus = BusClient(settings=make_settings(fake_bus.url), api_key=API_KEY, rng=random.Random(1))
    assert bus._transport._session is None
    await bus.status("i_1")
    session = bus._transport._session
    assert session is not None
    await bus.aclose()
    assert session.closed


def test_an_empty_api_key_is_refused() -> None:
    with pytest.raises(IntentBusAuthError):
        BusClient(settings=make_settings("http://127.0.0.1:1"), api_key=" ")


def test_the_client_repr_does_not_show_the_key() -> None:
    bus = BusClient(settings=make_settings("http://127.0.0.1:1"), api_key=API_KEY)
    assert API_KEY not in repr(bus)
    assert API_KEY not in repr(bus._transport._auth)
