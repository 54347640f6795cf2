"""``/admin/dashboard`` over plain HTTP, on both backends: the page and its policy, logins,
sessions, CSRF, the login brake, the overview it polls, and the admin actions it uses.

The browser tests (``test_dashboard_browser.py``) drive the page itself.
"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from typing import Any

import aiohttp

from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error
from tests.support.sidecar_rig import until

DASH = "/admin/dashboard"


def _browser_like() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 as a browser does (aiohttp's jar does not
    by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login(
    http: aiohttp.ClientSession, bus: BusProcess, password: str
) -> aiohttp.ClientResponse:
    async with http.post(bus.url + DASH + "/login", json={"password": password}) as r:
        await r.read()
        return r


async def test_the_page_is_one_small_document_that_may_run_only_its_own_script(
    bus: BusProcess,
) -> None:
    async with _browser_like() as http, http.get(bus.url + DASH) as r:
        body = await r.read()
        policy = r.headers["Content-Security-Policy"]
    assert r.status == 200 and r.content_type == "text/html"
    assert len(body) < 150_000
    assert not re.search(rb"""(src|href)=["']?(https?:)?//""", body)  # nothing from elsewhere
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", policy)
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


async def test_a_login_gives_an_http_only_strict_cookie_and_a_csrf_token(bus: BusProcess) -> None:
    async with _browser_like() as http:
        wrong = await _login(http, bus, "not-the-secret")
        assert wrong.status == 401
        async with http.post(bus.url + DASH + "/login", json={"password": bus.admin_secret}) as r:
            assert r.status == 200
            doc = await r.json()
            cookie = SimpleCookie(r.headers["Set-Cookie"])["intent_dashboard"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
        assert 3600 <= int(cookie["max-age"]) <= 86400
        csrf = doc["csrf_token"]
        overview = bus.url + DASH + "/overview"
        async with http.get(overview, headers={"X-CSRF-Token": csrf}) as ok:
            assert ok.status == 200
            assert {"goals", "throughput", "dead", "parked_claims"} <= set(await ok.json())
        # The cookie alone, as a page on another site could make a browser send it: refused.
        async with http.get(overview) as forged:
            assert forged.status == 403
            assert (await forged.json())["error"]["code"] == "csrf_failed"
        async with http.post(
            bus.url + "/admin/generate_key", json={"owner": "x"}, headers={"X-CSRF-Token": "0" * 43}
        ) as forged:
            assert forged.status == 403
        # A page loaded afresh gets the token of the session it holds.
        async with http.get(bus.url + DASH + "/session") as again:
            assert (await again.json())["csrf_token"] == csrf
        async with http.post(bus.url + DASH + "/logout", headers={"X-CSRF-Token": csrf}) as out:
            assert out.status == 200
        async with http.get(overview, headers={"X-CSRF-Token": csrf}) as gone:
            assert gone.status == 401


async def test_a_tampered_or_missing_cookie_is_not_a_session(bus: BusProcess) -> None:
    async with _browser_like() as http:
        r = await _login(http, bus, bus.admin_secret)
        value = SimpleCookie(r.headers["Set-Cookie"])["intent_dashboard"].value
        expires, rest = value.split(".", 1)
        later = f"{int(expires) + 86400}.{rest}"  # a longer session, signed for the shorter
    for cookie in (later, value[:-2] + "xx", "garbage", ""):
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), cookies={"intent_dashboard": cookie}
        ) as http:
            async with http.get(bus.url + DASH + "/session") as r:
                assert r.status == 401, cookie
            async with http.get(bus.url + DASH + "/overview", headers={"X-CSRF-Token": "x"}) as r:
                assert r.status == 401, cookie


async def test_failed_logins_are_braked_per_address(bus: BusProcess) -> None:
    async with _browser_like() as http:
        for _ in range(5):
            assert (await _login(http, bus, "guess")).status == 401
        braked = await _login(http, bus, "guess")
        assert braked.status == 429 and int(braked.headers["Retry-After"]) >= 1
        # Even the right secret waits: the brake does not answer whether a guess was right.
        assert (await _login(http, bus, bus.admin_secret)).status == 429


async def test_the_overview_charts_what_was_published_and_fulfilled(
    bus: BusProcess, raw: RawBus
) -> None:
    key, key_id = await raw.new_key("charted")
    for n in range(5):
        await raw.publish(key, {"goal": "chart", "payload": {"n": n}})
    worker = {"X-Worker-ID": "pod-7", "X-Worker-Capabilities": "gpu,avx"}
    claimed = await raw.claim(key, goal="chart", headers=worker)
    assert claimed is not None
    r = await raw.fulfill(key, claimed["id"], {"claim_token": claimed["claim_token"]})
    assert r.status == 200
    assert await raw.claim(key, goal="chart", headers=worker) is not None  # held

    async def charted() -> dict[str, Any] | None:
        o = await raw.admin("GET", DASH + "/overview")
        series = o.body["throughput"]
        if sum(series["published"]) >= 5 and sum(series["fulfilled"]) >= 1:
            return o.body
        return None

    doc = await until(charted, timeout=5, what="the chart to show the traffic")
    assert len(doc["throughput"]["published"]) == 900
    [goal] = [g for g in doc["goals"] if g["goal"] == "chart"]
    assert (goal["ready"], goal["claimed"]) == (3, 1)
    assert goal["fulfilled_per_minute"] == 1 and goal["failed_per_minute"] == 0
    assert sum(goal["spark"]) == 1 and len(goal["spark"]) == 15
    [seen] = [w for w in doc["workers"] if w["worker"] == "pod-7"]
    assert seen["key_id"] == key_id and seen["capabilities"] == ["avx", "gpu"]
    assert (seen["held"], seen["claims"]) == (1, 2)


async def test_a_dead_letter_can_be_cancelled_and_then_retried(raw: RawBus) -> None:
    key, _ = await raw.new_key("dead")
    intent_id = await raw.dead_letter(key, "dies", {"n": 1})
    cancelled = await raw.admin("POST", f"/admin/intents/{intent_id}/cancel")
    assert cancelled.status == 200, cancelled
    assert (await raw.status(key, intent_id)).body["status"] == "cancelled"
    assert (await raw.admin("GET", "/admin/dead")).body["dead"] == []
    assert_error(
        await raw.admin("POST", f"/admin/intents/{intent_id}/cancel"),
        409,
        "conflict",
        "already cancelled",
    )
    retried = await raw.admin("POST", f"/admin/intents/{intent_id}/retry")
    assert retried.status == 200
    assert (await raw.stats(key, goal="dies"))[0]["ready"] == 1


async def test_looking_up_a_fulfilled_intent_shows_its_result(raw: RawBus) -> None:
    key, _ = await raw.new_key("looked-up")
    intent_id = await raw.publish(key, {"goal": "answer", "payload": {"q": 6 * 7}})
    claimed = await raw.claim(key, goal="answer")
    assert claimed is not None
    done = await raw.fulfill(
        key, intent_id, {"claim_token": claimed["claim_token"], "result": {"a": 42}}
    )
    assert done.status == 200, done

    async def found() -> dict[str, Any] | None:
        r = await raw.admin("GET", f"/admin/intents/{intent_id}")
        return r.body if r.status == 200 and "result" in r.body else None

    doc = await until(found, timeout=5, what="the fulfilled intent with its result")
    assert doc["status"] == "fulfilled" and doc["claim_attempts"] == 1
    assert doc["result"] == {"a": 42} and doc["result_type"] == "json"
    assert doc["payload"] == {"q": 42}


async def test_hostile_logins_get_clear_errors_and_no_session(bus: BusProcess) -> None:
    login = bus.url + DASH + "/login"
    async with _browser_like() as http:
        for body, status, code in (
            (b"{not json", 400, None),
            (b"[]", 400, None),
            (b'{"password": 12345}', 401, "unauthorized"),
            (b'{"password": null}', 401, "unauthorized"),
            (b'{"password": "' + b"x" * 100_000 + b'"}', 401, "unauthorized"),
            (b'{"password": "\\udcff"}', 400, "invalid_json"),  # a lone surrogate
        ):
            async with http.post(
                login, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                doc = await r.json()
                assert r.status == status, (body[:40], doc)
                assert doc["error"]["message"]
                if code is not None:
                    assert doc["error"]["code"] == code
                assert "Set-Cookie" not in r.headers
        # A CSRF header of the wrong shape, or a cookie of bytes: refused, not an error.
        r = await _login(http, bus, bus.admin_secret)
        assert r.status == 200
        for token in ("", "x" * 5000, "é"):
            async with http.get(bus.url + DASH + "/overview", headers={"X-CSRF-Token": token}) as o:
                assert o.status == 403, token
    async with (
        aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), cookies={"intent_dashboard": "\u00e9" * 300}
        ) as http,
        http.get(bus.url + DASH + "/session") as r,
    ):
        assert r.status == 401
