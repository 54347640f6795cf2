"""Every string the bus stores is checked first: hostile bytes get a 400 naming the field.

The strings come in four ways (JSON bodies, query strings, path segments, headers), and bytes
that are not UTF-8 arrive differently on each: orjson refuses them, aiohttp turns a
percent-encoded query into U+FFFD and a header into lone surrogates. Each surface gets its own
table; after all of them the bus is alive and stored nothing it should not have.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import StartBus
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus, assert_error, send_raw_http

#: Text that must never be stored as a name (goal, key, worker id, capability).
BAD_NAMES = [
    "a\x00b",
    "tab\there",
    "new\nline",
    "bell\x07",
    "del\x7f",
    "c1\x85control",
    "esc\x1b[31mred",
]

#: Percent-encoded bytes that are not UTF-8 (or are encoded surrogates / overlongs).
BAD_ENCODED = ["%ff", "%c3", "%ed%a0%80", "%c0%af", "abc%fe%ff", "%f8%88%80%80%80"]


async def test_json_names_with_control_characters_are_refused(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for bad in BAD_NAMES:
        for doc, code in (
            ({"goal": bad, "payload": {}}, "invalid_goal"),
            ({"goal": "g", "payload": {}, "target_worker": bad}, "invalid_target_worker"),
            (
                {"goal": "g", "payload": {}, "required_capability": bad},
                "invalid_required_capability",
            ),
        ):
            r = await raw.request("POST", "/intent", key=key, doc=doc)
            assert_error(r, 400, code, "control characters")
        r = await raw.admin("POST", "/admin/generate_key", {"owner": bad})
        assert_error(r, 400, "invalid_request", "owner")
    assert await raw.stats(key) == []  # nothing was stored


async def test_query_strings_that_are_not_utf8_are_refused(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for bad in BAD_ENCODED:
        for method, path in (("POST", "/claim"), ("GET", "/stats"), ("GET", "/admin/dead")):
            r = await raw.raw(
                method,
                f"{path}?goal={bad}",
                key=key,
                headers={"X-Admin-Token": key},
            )
            assert r[0] == 400, (path, bad, r)
            assert b"not valid UTF-8" in r[2], r
    for bad in ("%00", "%0a", "%7f"):
        r = await raw.raw("POST", f"/claim?goal=g{bad}", key=key)
        assert r[0] == 400, (bad, r)


async def test_kv_keys_are_decoded_strictly(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    for bad in [*BAD_ENCODED, "%00", "a%0ab", "%1b"]:
        status, _headers, body = await raw.raw("POST", f"/set/{bad}", key=key, doc={"value": "v"})
        assert status == 400, (bad, body)
        status, _headers, body = await raw.raw("GET", f"/get/{bad}", key=key)
        assert status == 400, (bad, body)
    # An ordinary non-ASCII key round-trips (percent-encoded UTF-8 is valid UTF-8).
    r = await raw.request("POST", "/set/caf%C3%A9", key=key, doc={"value": "ok"})
    assert r.status == 200, r
    r = await raw.request("GET", "/get/caf%C3%A9", key=key)
    assert (r.status, r.body) == (200, {"value": "ok"})


@pytest.mark.parametrize("token", ["\u00e9" * 32, "\u2603", "x" * 129, " ", "tok\nen", 7, []])
async def test_an_odd_claim_token_is_a_400_not_a_500(
    bus: BusProcess, raw: RawBus, token: object
) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "tok", "payload": {}})
    got = await raw.claim(key, goal="tok")
    assert got is not None
    for route in ("fulfill", "fail", "extend_claim", "release"):
        r = await raw.request("POST", f"/{route}/{intent_id}", key=key, doc={"claim_token": token})
        assert_error(r, 400, "invalid_request", "claim_token")
    # The lease is untouched: the real token still works.
    r = await raw.request(
        "POST", f"/fulfill/{intent_id}", key=key, doc={"claim_token": got["claim_token"]}
    )
    assert r.status == 200


async def test_error_texts_keep_lines_but_not_nul(bus: BusProcess, raw: RawBus) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "err", "payload": {}, "max_attempts": 5})
    got = await raw.claim(key, goal="err")
    assert got is not None
    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"claim_token": got["claim_token"], "error": "a\x00b"},
    )
    assert_error(r, 400, "invalid_request", "error")
    trace = 'Traceback (most recent call last):\n  File "h.py", line 1\n\tValueError: x'
    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"claim_token": got["claim_token"], "error": trace},
    )
    assert r.status == 200, r
    r = await raw.request("GET", f"/status/{intent_id}", key=key)
    assert r.body["last_error"] == trace


def _request(path: str, headers: dict[str, bytes]) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    lines += [b"Content-Length: 0", b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize("header", ["X-Worker-ID", "X-Worker-Capabilities", "X-Claim-Session"])
@pytest.mark.parametrize("value", [b"\xff\xfe", b"ok\xc3", b"\xed\xa0\x80", b"bel\x07l"])
async def test_claim_headers_are_checked_before_use(
    bus: BusProcess, raw: RawBus, header: str, value: bytes
) -> None:
    key = bus.admin_secret
    intent_id = await raw.publish(key, {"goal": "hdr", "payload": {}})
    headers = {"X-API-KEY": key.encode(), header: value}
    status, doc = await send_raw_http(bus.port, _request("/claim?goal=hdr", headers))
    # 400 from the bus naming the header, or aiohttp's own 400 for a control byte.
    assert status == 400, doc
    if doc is not None:
        assert header in doc["error"]["message"], doc
    got = await raw.claim(key, goal="hdr")
    assert got is not None and got["id"] == intent_id  # the refused claim took nothing


def test_a_short_admin_secret_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", "bus", "--db", str(tmp_path / "b.db")],
        env={**os.environ, "INTENT_BUS_ADMIN_SECRET": "short-secret-23-chars.."},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "the admin secret must be at least 24 characters" in done.stderr
    assert "openssl rand -hex 24" in done.stderr
    assert not (tmp_path / "b.db").exists()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_database_files_are_private(start: StartBus, tmp_path: Path) -> None:
    old = os.umask(0o022)  # what a typical shell has: files readable by everyone
    try:
        bus = start()
    finally:
        os.umask(old)
    assert isinstance(bus.db, Path)
    files = [bus.db, bus.db.with_name(bus.db.name + "-wal"), bus.db.with_name(bus.db.name + "-shm")]
    for path in files:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize(
    "target",
    [
        b"/status/\x80",
        b"/result/\xed\xa0\x80",
        b"/fulfill/\xff",
        b"/nowhere/\xc3",
        b"/admin/dead/\x80",
    ],
)
async def test_raw_path_bytes_get_a_json_answer_with_the_pure_python_parser(
    start: StartBus, target: bytes
) -> None:
    """Found by the fuzzing below with aiohttp's pure-Python parser, which passes raw path bytes
    on as lone surrogates: once a 500 from the database lookup or the 404 message."""
    bus = start(env={"AIOHTTP_NO_EXTENSIONS": "1"})
    method = b"POST" if target.startswith(b"/fulfill") else b"GET"
    key = bus.admin_secret.encode()
    request = (
        method
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-KEY: "
        + key
        + b"\r\nX-Admin-Token: "
        + key
        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, doc = await send_raw_http(bus.port, request)
    assert status == 404, doc
    assert doc is not None and doc["error"]["code"] == "not_found"
