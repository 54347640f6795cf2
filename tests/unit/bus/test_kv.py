"""The KV store's memory side: expiry on read, sweeps, per-owner scope."""

from __future__ import annotations

from intent_fleet.bus.kv import KVStore

from .conftest import T0


def test_get_before_and_after_expiry() -> None:
    kv = KVStore()
    op = kv.set_op("k_a", "colour", "blue", expires_at=T0 + 10)
    assert not callable(op)
    assert op[1] == ("k_a", "colour", "blue", T0 + 10)
    assert kv.get("k_a", "colour", now=T0) is None  # the write alone changes no memory
    kv.set("k_a", "colour", "blue", expires_at=T0 + 10)
    assert kv.get("k_a", "colour", now=T0 + 9.9) == "blue"
    assert kv.get("k_a", "colour", now=T0 + 10) is None  # expiry is inclusive
    assert len(kv) == 0  # an expired read forgets the entry
    assert kv.get("k_a", "missing", now=T0) is None


def test_keys_are_scoped_per_owner() -> None:
    kv = KVStore()
    kv.set("k_a", "x", "a's", expires_at=T0 + 10)
    kv.set("k_b", "x", "b's", expires_at=T0 + 10)
    assert kv.get("k_a", "x", now=T0) == "a's"
    assert kv.get("k_b", "x", now=T0) == "b's"
    assert kv.get("k_c", "x", now=T0) is None


def test_set_overwrites_value_and_expiry() -> None:
    kv = KVStore([("k_a", "x", "old", T0 + 1)])
    kv.set("k_a", "x", "new", expires_at=T0 + 100)
    assert kv.get("k_a", "x", now=T0 + 50) == "new"


def test_sweep_counts_and_forgets_expired_entries() -> None:
    kv = KVStore(
        [
            ("k_a", "gone1", "v", T0 + 1),
            ("k_a", "gone2", "v", T0 + 5),
            ("k_b", "stays", "v", T0 + 6),
        ]
    )
    count, op = kv.sweep(now=T0 + 5)
    assert count == 2
    assert not callable(op)
    assert op[1] == (T0 + 5,)
    assert len(kv) == 1
    assert kv.get("k_b", "stays", now=T0 + 5) == "v"
    assert kv.sweep(now=T0 + 5)[0] == 0


def test_purge_empties_memory() -> None:
    kv = KVStore([("k_a", "x", "v", T0 + 100)])
    kv.purge()
    assert len(kv) == 0
    assert kv.get("k_a", "x", now=T0) is None


def test_entries_are_counted_per_owner_for_the_quota() -> None:
    kv = KVStore([("k_a", "x", "v", T0 + 1)])
    kv.set("k_a", "y", "v", expires_at=T0 + 100)
    kv.set("k_a", "y", "again", expires_at=T0 + 100)  # an overwrite is no new entry
    kv.set("k_b", "x", "v", expires_at=T0 + 100)
    assert (kv.count_of("k_a"), kv.count_of("k_b"), kv.count_of("k_c")) == (2, 1, 0)
    assert kv.has("k_a", "x") and not kv.has("k_b", "y")
    kv.forget_expired(now=T0 + 1)
    assert kv.count_of("k_a") == 1
    kv.purge()
    assert kv.count_of("k_a") == kv.count_of("k_b") == 0
