"""The ephemeral key-value store: per-key namespaces, TTLs, durable writes."""

from __future__ import annotations

from collections.abc import Iterable

from .store import Op, kv_set_op, kv_sweep_op

__all__ = ["KVStore"]


class KVStore:
    """Values live in memory for fast reads and in SQLite so a restart keeps them."""

    def __init__(self, rows: Iterable[tuple[str, str, str, float]] = ()) -> None:
        self._data: dict[tuple[str, str], tuple[str, float]] = {}
        #: Entries per owner, for the per-key quota.
        self._per_owner: dict[str, int] = {}
        for owner, key, value, expires_at in rows:
            self._put(owner, key, value, expires_at)

    def __len__(self) -> int:
        return len(self._data)

    def count_of(self, owner: str) -> int:
        return self._per_owner.get(owner, 0)

    def has(self, owner: str, key: str) -> bool:
        return (owner, key) in self._data

    def _put(self, owner: str, key: str, value: str, expires_at: float) -> None:
        if (owner, key) not in self._data:
            self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
        self._data[(owner, key)] = (value, expires_at)

    def _drop(self, owner: str, key: str) -> None:
        if self._data.pop((owner, key), None) is not None:
            left = self._per_owner.get(owner, 0) - 1
            if left > 0:
                self._per_owner[owner] = left
            else:
                self._per_owner.pop(owner, None)

    def get(self, owner: str, key: str, *, now: float) -> str | None:
        entry = self._data.get((owner, key))
        if entry is None:
            return None
        if entry[1] <= now:
            self._drop(owner, key)
            return None
        return entry[0]

    def set_op(self, owner: str, key: str, value: str, *, expires_at: float) -> Op:
        """The write that stores a value; :meth:`set` puts it in memory once that is durable,
        so a write the disk refuses leaves memory as it was."""
        return kv_set_op(owner, key, value, expires_at=expires_at)

    def set(self, owner: str, key: str, value: str, *, expires_at: float) -> None:
        self._put(owner, key, value, expires_at)

    def forget_expired(self, *, now: float) -> None:
        """Drop expired entries from memory only (the sweep deletes their rows later; a
        restart never loads them): what a key at its quota needs before it is refused."""
        for owner, key in [k for k, (_v, exp) in self._data.items() if exp <= now]:
            self._drop(owner, key)

    def sweep(self, *, now: float) -> tuple[int, Op]:
        """Forget expired entries; returns how many and the matching delete."""
        expired = [k for k, (_v, exp) in self._data.items() if exp <= now]
        for owner, key in expired:
            self._drop(owner, key)
        return len(expired), kv_sweep_op(now=now)

    def purge(self) -> None:
        self._data.clear()
        self._per_owner.clear()
