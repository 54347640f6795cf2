"""What a decoded JSON value is: the type checks every reader of untrusted JSON shares.

Python counts ``True`` as the integer 1; JSON does not, and neither does this project. A
boolean where a count belongs is a mistake to report, not a 1 to act on, so every reader of
a request body, an answer, a resource spec or a setting asks here rather than ``isinstance``.
The wire models go further and are declared as strict structs (:mod:`.models`); these are
for the readers whose rules depend on settings or whose errors must read a certain way.
"""

from __future__ import annotations

import math
from typing import TypeGuard

__all__ = ["is_int", "is_number", "json_kind"]


def is_int(value: object) -> TypeGuard[int]:
    """An integer, and not a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite integer or float, and not a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def json_kind(value: object) -> str:
    """What ``value`` is, in JSON's words ("an array"), for messages that must not quote it."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "an object"
        case _:
            return type(value).__name__
