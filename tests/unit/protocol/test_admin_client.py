"""AdminClient: the admin token, the admin routes' shapes, and which calls retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from intent_fleet.protocol import (
    AdminClient,
    Clock,
    DeadLetter,
    IntentBusAuthError,
    IntentBusError,
    IntentBusServerError,
    KeyInfo,
)

from .conftest import ADMIN_SECRET, FakeBus, Reply, Sleeps, make_settings

UNAVAILABLE = Reply(503, {"error": {"code": "unavailable", "message": "restarting"}})


@pytest.fixture
async def admin(fake_bus: FakeBus, sleeps: Sleeps) -> AsyncIterator[AdminClient]:
    async with AdminClient(
        settings=make_settings(fake_bus.url), admin_secret=ADMIN_SECRET, clock=Clock(sleep=sleeps)
    ) as client:
        yield client


async def test_generate_key_sends_the_admin_token_and_is_not_retried(
    admin: AdminClient, fake_bus: FakeBus
) -> None:
    fake_bus.on("POST", "/admin/generate_key", UNAVAILABLE)
    with pytest.raises(IntentBusServerError):
        await admin.generate_key("ops")
    assert len(fake_bus.seen) == 1
    fake_bus.on(
        "POST",
        "/admin/generate_key",
        Reply(201, {"api_key": "tk_new", "id": "k_1", "owner": "ops"}),
    )
    info = await admin.generate_key("ops")
    assert info == KeyInfo(api_key="tk_new", id="k_1", owner="ops")
    seen = fake_bus.seen[-1]
    assert seen.headers["X-Admin-Token"] == ADMIN_SECRET
    assert "X-API-KEY" not in seen.headers
    assert seen.json() == {"owner": "ops"}


async def test_revoke_key_needs_exactly_one_name(admin: AdminClient, fake_bus: FakeBus) -> None:
    fake_bus.on("POST", "/admin/revoke_key", Reply(200, {"ok": True, "id": "k_1"}))
    with pytest.raises(IntentBusError, match="exactly one"):
        await admin.revoke_key()
    with pytest.raises(IntentBusError, match="exactly one"):
        await admin.revoke_key(api_key="tk", key_id="k_1")
    assert await admin.revoke_key(key_id="k_1") == "k_1"
    assert await admin.revoke_key(api_key="tk_x") == "k_1"
    assert [s.json() for s in fake_bus.seen] == [{"id": "k_1"}, {"api_key": "tk_x"}]


async def test_list_keys_and_dead_letters_are_retried_reads(
    admin: AdminClient, fake_bus: FakeBus, sleeps: Sleeps
) -> None:
    keys = {"keys": [{"id": "k_1", "owner": "a", "created_at": 1.0, "revoked_at": None}]}
    dead = {
        "dead": [
            {
                "intent_id": "i_9",
                "namespace": "n",
                "goal": "g",
                "attempts": 3,
                "reason": "boom",
                "created_at": 1.0,
                "died_at": 2.0,
            }
        ]
    }
    fake_bus.on("GET", "/admin/keys", UNAVAILABLE, Reply(200, keys))
    fake_bus.on("GET", "/admin/dead", Reply(200, dead))
    assert await admin.list_keys() == (KeyInfo(id="k_1", owner="a", created_at=1.0),)
    letters = await admin.dead_letters(namespace="n", limit=10)
    assert letters == (DeadLetter("i_9", "n", "g", 3, "boom", 1.0, 2.0),)
    assert fake_bus.seen[-1].raw_path == "/admin/dead?limit=10&namespace=n"
    assert len(sleeps.delays) == 1
    with pytest.raises(IntentBusError, match="limit"):
        await admin.dead_letters(limit=0)


async def test_intent_actions_purge_and_metrics(admin: AdminClient, fake_bus: FakeBus) -> None:
    fake_bus.on(
        "POST",
        "/admin/intents/a%2Fb/retry",
        Reply(200, {"id": "a/b", "ok": True, "status": "open"}),
    )
    fake_bus.on(
        "POST",
        "/admin/intents/i/cancel",
        Reply(200, {"id": "i", "ok": True, "status": "cancelled"}),
    )
    fake_bus.on("POST", "/admin/purge", Reply(200, {"ok": True, "deleted": 4}))
    fake_bus.on("GET", "/metrics", Reply(200, body=b"intent_bus_dead_letters_total 0\n"))
    assert await admin.retry_intent("a/b") == "open"
    assert await admin.cancel_intent("i") == "cancelled"
    assert await admin.purge(namespace="n") == 4
    assert await admin.metrics() == "intent_bus_dead_letters_total 0\n"
    purge = fake_bus.requests_to("/admin/purge")[0]
    assert purge.json() == {"confirm": True, "namespace": "n"}


async def test_a_rejected_admin_token_is_an_auth_error(
    admin: AdminClient, fake_bus: FakeBus
) -> None:
    fake_bus.on(
        "GET", "/admin/keys", Reply(401, {"error": {"code": "unauthorized", "message": "no"}})
    )
    with pytest.raises(IntentBusAuthError) as caught:
        await admin.list_keys()
    assert caught.value.code == "unauthorized"
    assert ADMIN_SECRET not in str(caught.value)


def test_the_admin_secret_is_required_and_hidden() -> None:
    with pytest.raises(IntentBusAuthError):
        AdminClient(settings=make_settings("http://127.0.0.1:1"), admin_secret="")
    client = AdminClient(settings=make_settings("http://127.0.0.1:1"), admin_secret=ADMIN_SECRET)
    assert ADMIN_SECRET not in repr(client)
