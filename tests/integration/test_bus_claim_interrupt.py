"""Extension claim_interrupt: a draining worker ends its own parked long-polls at once."""

from __future__ import annotations

import asyncio

from tests.support.rawbus import RawBus, assert_error


async def _parked(raw: RawBus, key: str, session: str, goal: str = "g") -> asyncio.Task[object]:
    task = asyncio.ensure_future(
        raw.claim(key, headers={"X-Claim-Session": session}, goal=goal, wait=25)
    )
    await asyncio.sleep(0.2)  # let it reach the bus and park
    assert not task.done()
    return task


async def test_interrupt_ends_only_that_sessions_parked_claims(raw: RawBus) -> None:
    key, _ = await raw.new_key()
    mine = await _parked(raw, key, "session-a")
    other = await _parked(raw, key, "session-b")

    r = await raw.request(
        "POST", "/claim/interrupt", key=key, headers={"X-Claim-Session": "session-a"}
    )
    assert r.status == 200, r
    assert r.body == {"interrupted": 1}
    # The interrupted claim answers "nothing" now, not after its 25 s wait.
    assert await asyncio.wait_for(mine, timeout=10) is None
    assert not other.done()

    # The other session is still parked and still gets work.
    intent_id = await raw.publish(key, {"goal": "g", "payload": {}})
    got = await asyncio.wait_for(other, timeout=10)
    assert isinstance(got, dict)
    assert got["id"] == intent_id


async def test_a_session_cannot_interrupt_another_keys_claims(raw: RawBus) -> None:
    alice, _ = await raw.new_key("alice")
    bob, _ = await raw.new_key("bob")
    parked = await _parked(raw, alice, "shared-name")
    r = await raw.request(
        "POST", "/claim/interrupt", key=bob, headers={"X-Claim-Session": "shared-name"}
    )
    assert r.body == {"interrupted": 0}
    assert not parked.done()
    await raw.request(
        "POST", "/claim/interrupt", key=alice, headers={"X-Claim-Session": "shared-name"}
    )
    assert await asyncio.wait_for(parked, timeout=10) is None


async def test_interrupt_needs_a_session(raw: RawBus) -> None:
    key, _ = await raw.new_key()
    r = await raw.request("POST", "/claim/interrupt", key=key)
    assert_error(r, 400, "invalid_request", "X-Claim-Session")
    health = await raw.request("GET", "/health", key=None, sign=False)
    assert "claim_interrupt" in health.body["features"]
