"""Running a coroutine on the fastest event loop available."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``uvloop.run`` where uvloop is installed (it is a dependency on Linux and
    macOS and halves the cost of socket I/O), else ``asyncio.run``."""
    try:
        import uvloop  # noqa: PLC0415 - optional at import time
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    return uvloop.run(main)
