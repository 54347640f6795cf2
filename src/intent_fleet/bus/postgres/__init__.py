"""The PostgreSQL backend: bus replicas that share one database.

:class:`.backend.SharedBackend` is made of parts that mirror the embedded backend's, one
module each: the pools (``database``), keys, nonces, rate limits, quotas, the life cycle
(``engine``), claims, backlog figures, KV, long-poll wake-ups (``wakeups``) and the
background listening and sweeping (``housekeeping``); ``groups`` lets requests that arrive
together share a statement, ``schema`` migrates, ``sql`` holds the shared SQL pieces. All
of the backend's SQL is in this package.
"""

from .backend import SharedBackend, open_shared

__all__ = ["SharedBackend", "open_shared"]
