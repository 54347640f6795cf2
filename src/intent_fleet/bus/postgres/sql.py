"""The SQL pieces several parts of the PostgreSQL backend build their statements from.

Every statement of the backend is written in the module that runs it; what more than one
of them needs (the intents' column lists, which statuses are live, the condition that the
caller holds a lease) is spelled here once.
"""

from __future__ import annotations

from typing import Final

from ..records import Status
from ..store import INTENT_FIELDS, TERMINAL_FIELDS

__all__ = ["COLUMNS", "LIVE", "RETURNING_INTENT", "TERMINAL", "leased", "reopened"]

#: The columns an :class:`~..records.Intent` is read from, and those of a terminal row.
COLUMNS: Final = ", ".join(INTENT_FIELDS)
RETURNING_INTENT: Final = ", ".join("i." + c for c in INTENT_FIELDS)
TERMINAL: Final = ", ".join(TERMINAL_FIELDS)

#: The live statuses, as an SQL list: an intent counts in its publisher's quotas in these.
LIVE: Final = "(" + ", ".join(f"'{s.value}'" for s in Status if not s.terminal) + ")"


def leased(intent_id: str, token: str, caller: str, *, row: str = "") -> str:
    """The condition that ``row`` (an alias and a dot, or nothing) is the intent
    ``intent_id`` leased to ``caller`` under ``token`` (SQL expressions).

    A lease belongs to the caller by its claim token, or (v1.1 clients, no token) by its
    key. Tokens are compared as digests, so how long the comparison takes says nothing
    about how much of a guessed token was right.
    """
    return (
        f"{row}id = {intent_id} AND {row}status = 'claimed' AND CASE WHEN {token} IS NULL"
        f" THEN {row}claimer = {caller} ELSE md5({row}claim_token) = md5({token}) END"
    )


def reopened(now: str) -> str:
    """The assignments that make a claimed intent claimable again, as if never claimed
    (:func:`~..lifecycle.refunded`: the attempt is given back)."""
    return (
        "status = 'open', attempts = greatest(0, attempts - 1), claim_token = NULL,"
        f" lease_until = NULL, claimer = NULL, worker_id = NULL, updated_at = {now}"
    )
