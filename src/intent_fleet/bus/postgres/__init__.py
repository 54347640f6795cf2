"""The PostgreSQL backend: bus replicas that share one database (see :mod:`.backend`)."""

from .backend import SharedBackend, open_shared

__all__ = ["SharedBackend", "open_shared"]
