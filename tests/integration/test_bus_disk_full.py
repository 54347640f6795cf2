"""A full disk: writes answer 507, everything else goes on, and the bus recovers by itself.

The database sits on a small tmpfs this test mounts (as root, like the cluster tests) and then
fills. Nothing that was acknowledged may be lost: after the disk has room again and the bus has
restarted, every intent that got a 201 is there, and every fulfil that got a 200 is fulfilled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import StartBus
from tests.support import scrape
from tests.support.rawbus import RawBus

#: Big enough for a bus to start and take some work, small enough to fill in a moment.
DISK_SIZE = "6m"
PAYLOAD = {"blob": "x" * 2000}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root, as the cluster tests do (run as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mount)],
        check=True,
        timeout=30,
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` with one file; returns it (delete it to free them)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (64 * 1024, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    try:
        (disk / "probe").write_bytes(b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError("the disk still has room")
    return filler


# The SQLite file on a full disk; PostgreSQL's own disk is the database's business.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_full_disk_answers_507_and_loses_nothing(start: StartBus, small_disk: Path) -> None:
    db = small_disk / "bus.db"
    bus = start(db=db)
    acked: list[str] = []
    fulfilled: list[str] = []
    async with RawBus(bus.url, admin_secret=bus.admin_secret) as raw:
        key = bus.admin_secret
        for _ in range(20):
            acked.append(await raw.publish(key, {"goal": "g", "payload": PAYLOAD}))
        filler = fill(small_disk)

        # Writes are refused, each with a clear 507; nothing half-done.
        refused = 0
        for _ in range(50):
            r = await raw.request("POST", "/intent", key=key, doc={"goal": "g", "payload": PAYLOAD})
            if r.status == 201:
                acked.append(r.body["id"])
                continue
            assert r.status == 507, r
            assert r.body["error"]["code"] == "insufficient_storage"
            assert "full" in r.body["error"]["message"]
            refused += 1
        assert refused > 0
        health = await raw.request("GET", "/health", key=None)
        assert (health.status, health.body["storage"]) == (200, "full")

        # Reads go on, from memory and from the database.
        r = await raw.request("GET", f"/status/{acked[0]}", key=key)
        assert (r.status, r.body["status"]) == (200, "open")
        assert [s["ready"] for s in await raw.stats(key, goal="g")] == [len(acked)]
        # Claims go on (their write is not waited for: at worst an intent is handed out again).
        got = await raw.claim(key, goal="g")
        assert got is not None
        # A fulfil needs the disk: refused, and the lease is kept for the worker's retry.
        r = await raw.fulfill(key, got["id"], {"claim_token": got["claim_token"]})
        assert r.status == 507, r
        r = await raw.request("GET", f"/status/{got['id']}", key=key)
        assert r.body["status"] == "claimed"

        # Space returns: the bus recovers by itself, the same fulfil goes through.
        filler.unlink()
        with contextlib.suppress(FileNotFoundError):
            (small_disk / "probe").unlink()
        r = await raw.fulfill(key, got["id"], {"claim_token": got["claim_token"]})
        assert r.status == 200, r
        fulfilled.append(got["id"])
        acked.append(await raw.publish(key, {"goal": "g", "payload": PAYLOAD}))
        health = await raw.request("GET", "/health", key=None)
        assert health.body["storage"] == "ok"
        status, _, text = await raw.raw(
            "GET", "/metrics", key=None, headers={"Authorization": f"Bearer {key}"}
        )
        assert status == 200
        # The refused publishes and the fulfil, plus the claim's background write.
        failed = scrape.value(text.decode(), 'intent_bus_failed_writes_total{cause="full"}')
        assert failed >= refused + 1, text

    assert bus.stop() == 0, bus.logs()
    again = start(db=db)
    async with RawBus(again.url, admin_secret=again.admin_secret) as raw:
        for intent_id in acked:
            r = await raw.request("GET", f"/status/{intent_id}", key=again.admin_secret)
            assert r.status == 200, (intent_id, r)
            expected = "fulfilled" if intent_id in fulfilled else ("open", "claimed")
            assert r.body["status"] in expected, (intent_id, r.body)
