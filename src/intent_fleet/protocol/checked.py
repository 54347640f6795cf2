"""How every checked dataclass of the project says what is wrong with it: all at once.

A checked dataclass (a settings class, a scaling policy, a backlog reading) lists what is
wrong with it in ``problems()``: ``(field, what is wrong)`` pairs ("pool_size", "must be >= 1,
got 0"), the text never quoting a secret. :func:`validate` gathers them from the object and from
every checked dataclass in its fields, however deep, names each ``Class.field``, and raises one
error holding all of them, so nobody fixes a spec or a command line one problem per try.

A dataclass built on its own (the root of a settings tree, a policy, a reading) calls
``validate(self)`` from ``__post_init__``; a settings class that only ever sits in a tree does
not, so that its root reports the problems of the whole tree together. The error is
:class:`InvalidSettingError` unless the caller names its own (the operator's spec values raise
its ``InvalidSpecError``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import InvalidSettingError, Problem

__all__ = ["Problems", "validate"]

#: What ``problems()`` returns: ``(field, what is wrong)`` pairs.
Problems = Iterator[tuple[str, str]]


def _problems(checked: Any) -> Iterator[Problem]:
    own = getattr(checked, "problems", None)
    if own is not None:
        owner = type(checked).__name__
        for name, text in own():
            yield Problem(f"{owner}.{name}", text)
    for f in dataclasses.fields(checked):
        value = getattr(checked, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _problems(value)


def validate(
    checked: Any, *, error: Callable[[Sequence[Problem]], Exception] = InvalidSettingError
) -> None:
    """Raise ``error`` with every problem of ``checked`` and the checked dataclasses in its
    fields, however deep; nothing when there is none."""
    found = list(_problems(checked))
    if found:
        raise error(found)
