"""Nonces of signed requests, recorded where every replica sees them.

Every signed request must record its nonce before it is served, so a request replayed to
any replica is refused. The backend records them in groups (:mod:`.groups`): one statement
carries the nonces of every request that arrived while the previous one was in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["INSERT_NONCES", "distinct", "first_uses"]

#: Parameters: key ids, nonces, expiry times (arrays, one element per distinct nonce);
#: answers the rows that were new.
INSERT_NONCES: Final = (
    "INSERT INTO nonces (key_id, nonce, expires_at)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])"
    " ON CONFLICT DO NOTHING RETURNING key_id, nonce"
)

Row = tuple[str, str, float]


def distinct(rows: Sequence[Row]) -> list[Row]:
    """The rows to insert: each (key id, nonce) once (a statement may not insert a row
    twice), with the first request's expiry."""
    seen: dict[tuple[str, str], float] = {}
    for key_id, nonce, expires_at in rows:
        seen.setdefault((key_id, nonce), expires_at)
    return [(k, n, e) for (k, n), e in seen.items()]


def first_uses(rows: Sequence[Row], added: set[tuple[str, str]]) -> list[bool]:
    """For each request, in order: whether its nonce is new. The same nonce twice in one
    group is new the first time only."""
    fresh = set(added)
    answers = []
    for key_id, nonce, _ in rows:
        answers.append((key_id, nonce) in fresh)
        fresh.discard((key_id, nonce))
    return answers
