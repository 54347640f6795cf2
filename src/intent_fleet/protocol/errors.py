"""The protocol package's exceptions; names match the published SDK's.

::

    IntentBusError                  anything that went wrong talking to a bus
    ├── IntentBusAuthError          no key, a rejected key (401) or signature (403)
    ├── IntentBusRateLimitError     429; ``retry_after`` holds the server's hint
    ├── IntentBusNetworkError       timeouts, refused or reset connections
    ├── IntentBusProtocolError      an answer that breaks the wire contract
    ├── IntentBusLeaseLostError     404 on fulfill/fail/extend: the lease is gone
    ├── IntentBusNotFoundError      404 elsewhere (status, result, KV)
    ├── IntentBusConflictError      409/422: idempotency key reused with another body
    └── IntentBusServerError        5xx after the retries the operation allows

Every error raised by a server answer carries ``status`` and ``code`` (the
``error.code`` of the protocol's JSON error body) when the server sent them.

Apart from that tree, for every settings dataclass of the project (see ``settings``) and
every file that holds a secret (see ``credentials``)::

    InvalidSettingError (a ValueError)   values a settings tree cannot work with; ``problems``
                                         lists each as a :class:`Problem`
    SecretFileError (a ValueError)       a secret file that is missing, unsafe, empty or
                                         unreadable; the message names what and the file
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "IntentBusAuthError",
    "IntentBusConflictError",
    "IntentBusError",
    "IntentBusLeaseLostError",
    "IntentBusNetworkError",
    "IntentBusNotFoundError",
    "IntentBusProtocolError",
    "IntentBusRateLimitError",
    "IntentBusServerError",
    "InvalidSettingError",
    "Problem",
    "SecretFileError",
]


class IntentBusError(Exception):
    """Base of every error this package raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class IntentBusAuthError(IntentBusError):
    """No usable API key, or the bus rejected the key or the signature."""


class IntentBusRateLimitError(IntentBusError):
    """The bus answered 429; ``retry_after`` is its hint in seconds, if any."""


class IntentBusNetworkError(IntentBusError):
    """The request did not get an HTTP answer (timeout, refused, reset)."""


class IntentBusProtocolError(IntentBusError):
    """The bus answered something the protocol does not allow."""


class IntentBusLeaseLostError(IntentBusError):
    """The caller no longer holds the lease on the intent (404 on a lease call)."""


class IntentBusNotFoundError(IntentBusError):
    """The intent or KV key does not exist, or is not visible to this key."""


class IntentBusConflictError(IntentBusError):
    """An idempotency key was reused with a different request body."""


class IntentBusServerError(IntentBusError):
    """The bus answered 5xx (after any retries the operation allows)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with one field: ``setting`` is ``Class.field``, ``text`` a phrase
    ("must be >= 1, got 0") that never quotes a secret."""

    setting: str
    text: str

    def __str__(self) -> str:
        return f"{self.setting} {self.text}"


class InvalidSettingError(ValueError):
    """A settings tree holds values it cannot work with; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(map(str, problems)))


class SecretFileError(ValueError):
    """A file that should hold a secret cannot be used; the message names what and the file,
    never its content."""
