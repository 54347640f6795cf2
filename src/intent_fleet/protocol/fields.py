"""Reading one field of a decoded JSON object: the one set of readers for untrusted JSON.

The bus reads request bodies with these and the operator reads IntentWorker specs with them,
so both follow the same rules: an absent or null field takes its default; a boolean is not a
number (see :mod:`.checks`), nor are NaN and the infinities; an integral float is an integer,
as not every JSON writer tells them apart.

The errors are each caller's own. ``error(name, text)`` builds the caller's exception from the
field's key and what is wrong with it ("must be an integer, not a boolean"): the bus answers 400
with its error code and the field quoted, the operator raises ``InvalidSpecError`` with the
field's path.

The bus reads every publish through the two number readers, so they do nothing on the way to
a good value beyond the checks themselves: they take their arguments by position as well (the
bus passes them so; a keyword argument costs about 25 ns a call, a tenth of what a reader
costs), and an open bound is infinite rather than None, so one chained comparison checks both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .checks import is_number, json_kind

__all__ = ["ErrorFor", "integer_field", "number_field", "object_field", "text_field"]

#: Builds the caller's exception from a field's key and what is wrong with it.
ErrorFor = Callable[[str, str], Exception]


def integer_field(  # noqa: PLR0917 - positional for the bus's hot path (module docstring)
    doc: Mapping[str, Any],
    name: str,
    default: int,
    error: ErrorFor,
    low: float = -math.inf,
    high: float = math.inf,
) -> int:
    """``doc[name]`` as an integer from ``low`` to ``high``."""
    value = doc.get(name)
    if value is None:
        return default
    if not is_number(value) or value != int(value):
        raise error(name, f"must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise error(name, _out_of_range(value, low, high))
    return int(value)


def number_field(  # noqa: PLR0917 - positional for the bus's hot path (module docstring)
    doc: Mapping[str, Any],
    name: str,
    default: float,
    error: ErrorFor,
    low: float = -math.inf,
    high: float = math.inf,
) -> float:
    """``doc[name]`` as a finite number from ``low`` to ``high``."""
    value = doc.get(name)
    if value is None:
        return default
    if not is_number(value):
        raise error(name, f"must be a finite number, not {_kind(value)}")
    if not low <= value <= high:
        raise error(name, _out_of_range(value, low, high))
    return float(value)


def text_field(
    doc: Mapping[str, Any],
    name: str,
    *,
    error: ErrorFor,
    default: str | None = None,
    max_chars: int | None = None,
) -> str:
    """``doc[name]`` as a string of at most ``max_chars``; required when ``default`` is None."""
    value = doc.get(name)
    if value is None:
        if default is None:
            raise error(name, "is required")
        return default
    if not isinstance(value, str):
        raise error(name, f"must be a string, not {json_kind(value)}")
    if max_chars is not None and len(value) > max_chars:
        raise error(name, f"must be at most {max_chars} characters, got {len(value)}")
    return value


def object_field(doc: Mapping[str, Any], name: str, *, error: ErrorFor) -> Mapping[str, Any]:
    """``doc[name]`` as an object; an empty one when absent or null."""
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(name, f"must be an object, not {json_kind(value)}")
    return value


def _kind(value: object) -> str:
    """What a value is, in JSON's words; a float that will not do (1.5, nan, inf) as itself."""
    return repr(value) if isinstance(value, float) else json_kind(value)


def _out_of_range(value: float, low: float, high: float) -> str:
    if math.isinf(low):
        return f"must be <= {high:g}, got {value}"
    if math.isinf(high):
        return f"must be >= {low:g}, got {value}"
    return f"must be between {low:g} and {high:g}, got {value}"
