"""Keys and signatures: 401 for keys, 403 invalid_signature for signatures, admin tokens."""

from __future__ import annotations

import secrets
import time

from intent_fleet.protocol.signing import canonical_body, sign_request
from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error


async def test_missing_key_is_401(bus: BusProcess, raw: RawBus) -> None:
    r = await raw.request("POST", "/intent", key=None, doc={"goal": "g", "payload": {}})
    assert_error(r, 401, "unauthorized", "X-API-KEY")
    for method, path in (
        ("POST", "/claim"),
        ("GET", "/stats"),
        ("POST", "/stats"),
        ("GET", "/get/k"),
    ):
        assert_error(await raw.request(method, path, key=None), 401, "unauthorized")


async def test_unknown_key_is_401(bus: BusProcess, raw: RawBus) -> None:
    r = await raw.request("POST", "/claim", key="tk_" + "0" * 40)
    assert_error(r, 401, "unauthorized", "Invalid")
    r = await raw.request("POST", "/claim", key="tk_" + "0" * 40, sign=False)
    assert_error(r, 401, "unauthorized")


async def test_bad_signature_is_403(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    doc = {"goal": "g", "payload": {"n": 1}}
    r = await raw.request("POST", "/intent", key=key, doc=doc, headers={"X-Signature": "ab" * 32})
    assert_error(r, 403, "invalid_signature", "signature")

    # Signed for one body, sent with another.
    body = canonical_body(doc)
    signed = sign_request(api_key=key, method="POST", path="/intent", body=body, now=time.time())
    tampered = canonical_body({"goal": "g", "payload": {"n": 2}})
    r = await raw.request("POST", "/intent", key=None, raw_body=tampered, headers=signed.as_dict())
    assert_error(r, 403, "invalid_signature", "does not match")

    # Signed with another key than the one presented.
    other, _ = await raw.new_key()
    signed = sign_request(api_key=other, method="POST", path="/intent", body=body, now=time.time())
    headers = {**signed.as_dict(), "X-API-KEY": key}
    r = await raw.request("POST", "/intent", key=None, raw_body=body, headers=headers)
    assert_error(r, 403, "invalid_signature")

    # Signed for another path or method.
    signed = sign_request(api_key=key, method="POST", path="/claim", body=b"", now=time.time())
    r = await raw.request("POST", "/claim?goal=g", key=None, headers=signed.as_dict())
    assert_error(r, 403, "invalid_signature")
    signed = sign_request(api_key=key, method="GET", path="/claim", body=b"", now=time.time())
    r = await raw.request("POST", "/claim", key=None, headers=signed.as_dict())
    assert_error(r, 403, "invalid_signature")

    # Only some of the signature headers.
    r = await raw.request("POST", "/claim", key=key, sign=False, headers={"X-Nonce": "n1"})
    assert_error(r, 403, "invalid_signature", "X-Timestamp", "X-Signature")

    # Nothing refused was published.
    assert await raw.claim(key, goal="g") is None


async def test_timestamp_outside_the_window_is_403(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for skew in (-301, 301, -3600):
        r = await raw.request(
            "POST", "/claim", key=key, params={"goal": "g"}, now=time.time() + skew
        )
        assert_error(r, 403, "invalid_signature", "X-Timestamp")
    # Within the window is fine.
    for skew in (-250, 250):
        r = await raw.request(
            "POST", "/claim", key=key, params={"goal": "g"}, now=time.time() + skew
        )
        assert r.status == 204, r
    r = await raw.request(
        "POST", "/claim", key=key, sign=False, headers={"X-Timestamp": "yesterday"}
    )
    assert_error(r, 403, "invalid_signature")


async def test_replayed_nonce_is_403(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    nonce = secrets.token_hex(8)
    doc = {"goal": "g", "payload": {}}
    first = await raw.request("POST", "/intent", key=key, doc=doc, nonce=nonce)
    assert first.status == 201
    again = await raw.request("POST", "/intent", key=key, doc=doc, nonce=nonce)
    assert_error(again, 403, "invalid_signature", "replay")
    # The replay created nothing: exactly one intent.
    assert await raw.claim(key, goal="g") is not None
    assert await raw.claim(key, goal="g") is None
    # The same nonce under another key is that key's own first use.
    other, _ = await raw.new_key()
    r = await raw.request("POST", "/claim", key=other, nonce=nonce)
    assert r.status == 204


async def test_unsigned_requests_are_accepted_by_default(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    r = await raw.request("POST", "/intent", key=key, doc={"goal": "g", "payload": {}}, sign=False)
    assert r.status == 201
    got = await raw.request("POST", "/claim", key=key, params={"goal": "g"}, sign=False)
    assert got.status == 200
    assert got.body["id"] == r.body["id"]


async def test_require_signatures_refuses_unsigned_requests(start: StartBus) -> None:
    bus = start("--require-signatures")
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        r = await raw.request(
            "POST", "/intent", key=key, doc={"goal": "g", "payload": {}}, sign=False
        )
        assert_error(r, 403, "invalid_signature", "requires signed requests")
        r = await raw.request("GET", "/stats", key=key, sign=False)
        assert_error(r, 403, "invalid_signature")
        # Signed, the same requests go through.
        intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
        got = await raw.claim(key, goal="g")
        assert got is not None
        assert got["id"] == intent_id
        # /health needs no key at all.
        assert (await raw.request("GET", "/health", key=None)).status == 200


async def test_query_with_awkward_characters_signs_and_verifies(
    bus: BusProcess, raw: RawBus
) -> None:
    tenant, tenant_id = await raw.new_key()
    goal = "resize images/thumbs ünï ☃ a+b&c=d"
    intent_id = await raw.publish(tenant, {"goal": goal, "payload": {}, "namespace": "ns.1"})
    # Parameters given out of order: the client signs the sorted, fully encoded form.
    params = [("wait", "0"), ("publisher", tenant_id), ("namespace", "ns.1"), ("goal", goal)]
    stats = await raw.request("GET", "/stats", key=tenant, params=params[2:])
    assert stats.status == 200, stats
    assert stats.body["goals"][0]["goal"] == goal
    assert stats.body["goals"][0]["ready"] == 1
    r = await raw.request("POST", "/claim", key=tenant, params=params)
    assert r.status == 200, r
    assert r.body["id"] == intent_id
    assert r.body["goal"] == goal


async def test_unsorted_query_on_the_wire_verifies_against_the_canonical_form(
    bus: BusProcess, raw: RawBus
) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "a b/c", "payload": {}})
    params = {"goal": "a b/c", "namespace": "default", "wait": "0"}
    # Sent unsorted, with '+' for the space and '/' left unencoded, as a form encoder might.
    r = await raw.request(
        "POST",
        "/claim",
        key=key,
        params=params,
        wire_path="/claim?wait=0&goal=a+b/c&namespace=default",
    )
    assert r.status == 200, r
    assert r.body["id"] == intent_id


async def test_revoked_key_is_401(bus: BusProcess, raw: RawBus) -> None:
    by_secret, _ = await raw.new_key("one")
    by_id, by_id_id = await raw.new_key("two")
    intent_id = await raw.publish(by_secret, {"goal": "g", "payload": {}})
    r = await raw.admin("POST", "/admin/revoke_key", {"api_key": by_secret})
    assert r.status == 200
    assert r.body["ok"] is True
    r = await raw.admin("POST", "/admin/revoke_key", {"id": by_id_id})
    assert r.status == 200
    assert r.body["id"] == by_id_id
    for key in (by_secret, by_id):
        assert_error(await raw.request("POST", "/claim", key=key), 401, "unauthorized", "revoked")
        assert_error(await raw.status(key, intent_id), 401, "unauthorized")
    keys = (await raw.admin("GET", "/admin/keys")).body["keys"]
    assert all(k["revoked_at"] is not None for k in keys)
    r = await raw.admin("POST", "/admin/revoke_key", {"id": "k_nope"})
    assert_error(r, 404, "not_found")
    r = await raw.admin("POST", "/admin/revoke_key", {})
    assert_error(r, 400, "invalid_request", "api_key")


async def test_admin_routes_need_the_admin_token(bus: BusProcess, raw: RawBus) -> None:
    tenant, _ = await raw.new_key()
    routes = [
        ("POST", "/admin/generate_key"),
        ("POST", "/admin/revoke_key"),
        ("GET", "/admin/keys"),
        ("POST", "/admin/purge"),
        ("POST", "/admin/cleanup"),
        ("GET", "/admin/intents/x"),
        ("POST", "/admin/intents/x/cancel"),
        ("POST", "/admin/intents/x/retry"),
        ("GET", "/admin/dead"),
        ("GET", "/admin/dead/x"),
    ]
    for method, path in routes:
        for headers in ({}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": tenant}):
            r = await raw.request(method, path, key=None, doc={"confirm": True}, headers=headers)
            assert_error(r, 401, "unauthorized", "X-Admin-Token")
        # An API key (even the admin secret) in X-API-KEY is not an admin token.
        r = await raw.request(method, path, key=bus.admin_secret)
        assert_error(r, 401, "unauthorized")
    assert len((await raw.admin("GET", "/admin/keys")).body["keys"]) == 1


async def test_admin_secret_is_an_api_key(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    st = await raw.status(key, intent_id)
    assert st.status == 200
    got = await raw.claim(key, goal="g")
    assert got is not None
    assert (await raw.fulfill(key, intent_id, {"claim_token": got["claim_token"]})).status == 200
    # And an admin may read any tenant's intent.
    tenant, _ = await raw.new_key()
    theirs = await raw.publish(tenant, {"goal": "g", "payload": {}})
    assert (await raw.status(key, theirs)).status == 200
