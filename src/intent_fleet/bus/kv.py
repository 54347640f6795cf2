"""The ephemeral key-value store: per-key namespaces, TTLs, durable writes."""

from __future__ import annotations

from collections.abc import Iterable

from .store import Op

__all__ = ["KVStore"]


class KVStore:
    """Values live in memory for fast reads and in SQLite so a restart keeps them."""

    def __init__(self, rows: Iterable[tuple[str, str, str, float]] = ()) -> None:
        self._data: dict[tuple[str, str], tuple[str, float]] = {
            (owner, key): (value, expires_at) for owner, key, value, expires_at in rows
        }

    def __len__(self) -> int:
        return len(self._data)

    def get(self, owner: str, key: str, *, now: float) -> str | None:
        entry = self._data.get((owner, key))
        if entry is None:
            return None
        if entry[1] <= now:
            del self._data[(owner, key)]
            return None
        return entry[0]

    def set(self, owner: str, key: str, value: str, *, expires_at: float) -> Op:
        """Update memory and return the write that makes it durable."""
        self._data[(owner, key)] = (value, expires_at)
        return (
            "INSERT OR REPLACE INTO kv (owner, key, value, expires_at) VALUES (?,?,?,?)",
            (owner, key, value, expires_at),
        )

    def sweep(self, *, now: float) -> tuple[int, Op]:
        """Forget expired entries; returns how many and the matching delete."""
        expired = [k for k, (_v, exp) in self._data.items() if exp <= now]
        for k in expired:
            del self._data[k]
        return len(expired), ("DELETE FROM kv WHERE expires_at <= ?", (now,))

    def purge(self) -> Op:
        self._data.clear()
        return ("DELETE FROM kv", ())
