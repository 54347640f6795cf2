"""The limits of the wire: what intent-fleet's bus accepts, and what its clients check first.

The bus refuses a request past one of these with a 400 naming the field; the clients check the
same numbers before sending, so a caller's mistake is reported without a round trip. Both read
them here, so the two can never disagree.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "DEFAULT_KV_TTL",
    "DEFAULT_PRIORITY",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_BACKOFF_BASE",
    "MAX_CLAIM_BATCH",
    "MAX_DEAD_PAGE",
    "MAX_DELAY_SECONDS",
    "MAX_ERROR_CHARS",
    "MAX_GOAL_CHARS",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_KV_KEY_CHARS",
    "MAX_KV_TTL",
    "MAX_OWNER_CHARS",
    "MAX_PRIORITY",
    "MAX_SESSION_CHARS",
    "MAX_STATS_GOALS",
    "MAX_TOKEN_CHARS",
    "MAX_WORKER_FIELD_CHARS",
    "NAMESPACE_RE",
]

#: A namespace: 1-64 letters, digits, ``_``, ``.`` or ``-`` (empty on the wire means "default").
NAMESPACE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Longest goal, characters.
MAX_GOAL_CHARS: Final = 256
#: Longest worker id, ``target_worker`` and ``required_capability``, characters.
MAX_WORKER_FIELD_CHARS: Final = 64
#: Longest ``X-Claim-Session`` (extension claim_interrupt), characters.
MAX_SESSION_CHARS: Final = 128
#: Longest claim token the bus takes back: its own are 32 hex characters; other servers' may
#: be longer.
MAX_TOKEN_CHARS: Final = 128
#: Longest ``Idempotency-Key`` of a publish, characters.
MAX_IDEMPOTENCY_KEY_CHARS: Final = 256
#: Longest KV key, characters.
MAX_KV_KEY_CHARS: Final = 256
#: KV entries live this long (seconds) when the request names no ``ttl``, and at most
#: ``MAX_KV_TTL``.
DEFAULT_KV_TTL: Final = 600
MAX_KV_TTL: Final = 86400
#: ``priority`` runs from 0 to ``MAX_PRIORITY``; larger is claimed first.
DEFAULT_PRIORITY: Final = 100
MAX_PRIORITY: Final = 1000
#: Most ``max_attempts`` a publish may ask for.
MAX_ATTEMPTS_LIMIT: Final = 20
#: Longest delay a publish may ask for: 30 days; further out is a scheduler's job.
MAX_DELAY_SECONDS: Final = 30 * 24 * 3600.0
#: Largest ``backoff_base`` a publish may ask for, seconds.
MAX_BACKOFF_BASE: Final = 3600.0
#: Longest ``/fail`` error text kept, as the reference server does (longer is cut).
MAX_ERROR_CHARS: Final = 500
#: Most intents one batch claim (``?max=N``, extension batch_claim) may take.
MAX_CLAIM_BATCH: Final = 100
#: Most goals one ``POST /stats`` (extension batch_stats) may ask about.
MAX_STATS_GOALS: Final = 1000
#: Longest owner name of a tenant key (``/admin/generate_key``), characters.
MAX_OWNER_CHARS: Final = 100
#: Most dead letters one ``GET /admin/dead`` page holds.
MAX_DEAD_PAGE: Final = 1000
