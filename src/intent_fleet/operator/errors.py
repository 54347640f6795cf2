"""The operator's one error tree.

::

    OperatorError
    ├── InvalidSpecError          an IntentWorker the operator cannot act on (fix the spec)
    │   ├── InvalidNameError      a name that cannot be an object's name (never sent anywhere)
    │   └── SpecRefusedError      a spec the operator will not act on, for safety
    │       ├── NotPermittedError     it names a Secret or ServiceAccount that has not opted in
    │       ├── NotOwnedError         its Deployment exists but belongs to someone else
    │       └── PodRefusedError       its pod template asks for what no worker pod may have
    ├── BacklogUnavailableError   a backlog source could not be read (replicas are held)
    │   └── DestinationRefusedError   the source URL leads where the operator may not go
    ├── FetchFailedError          one bounded GET gave no usable answer (``cause``, secret-free)
    ├── MalformedAnswerError      an answer that does not parse (Prometheus text, sidecar state)
    └── KubeApiError              the API server refused a call (``status`` is its HTTP code)
        ├── KubeNotFoundError
        └── KubeUnreachableError  no answer at all: refused, reset, timed out (``status`` 0)

The backlog sources turn ``FetchFailedError`` and ``MalformedAnswerError`` into a
``BacklogUnavailableError`` naming the source and the URL (or, for one pod of many, into
that pod's failure).

``SpecRefusedError`` carries the condition ``reason`` it is reported under, so the controller
has one way to turn any refusal into a condition and an Event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

from intent_fleet.protocol import Problem

__all__ = [
    "BacklogUnavailableError",
    "DestinationRefusedError",
    "FetchFailedError",
    "InvalidNameError",
    "InvalidSpecError",
    "KubeApiError",
    "KubeNotFoundError",
    "KubeUnreachableError",
    "MalformedAnswerError",
    "NotOwnedError",
    "NotPermittedError",
    "OperatorError",
    "PodRefusedError",
    "SpecRefusedError",
]


class OperatorError(Exception):
    """Base of every operator failure."""


class InvalidSpecError(OperatorError):
    """An IntentWorker the API server accepted but the operator cannot act on."""

    #: The condition reason this error is reported under.
    reason = "InvalidSpec"

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> Self:
        """One error naming every problem of a spec value (``validate(..., error=...)``)."""
        return cls("; ".join(map(str, problems)))


class InvalidNameError(InvalidSpecError):
    """A value that is not a valid Kubernetes object name; no request was made with it."""


class SpecRefusedError(InvalidSpecError):
    """A well-formed spec the operator refuses to act on, so it cannot be used against anyone."""

    reason = "Refused"


class NotPermittedError(SpecRefusedError):
    """The spec names a Secret or ServiceAccount that has not opted in to IntentWorkers."""

    reason = "CredentialsNotPermitted"


class NotOwnedError(SpecRefusedError):
    """A Deployment of the worker's name exists and is not this IntentWorker's."""

    reason = "DeploymentNotOwned"


class PodRefusedError(SpecRefusedError):
    """The pod template asks for something no worker pod may have."""

    reason = "PodNotAllowed"


class BacklogUnavailableError(OperatorError):
    """A backlog source could not be read; replicas are held, the condition says why."""


class DestinationRefusedError(BacklogUnavailableError):
    """A backlog URL resolves to an address the operator's egress policy refuses."""


class FetchFailedError(OperatorError):
    """A GET gave no usable answer; ``cause`` says why in a few words, secret-free."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class MalformedAnswerError(OperatorError):
    """An answer that does not parse; the message says where (a line, a field)."""


class KubeApiError(OperatorError):
    """The API server refused a call; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFoundError(KubeApiError):
    pass


class KubeUnreachableError(KubeApiError):
    """The API server gave no answer (connection refused or reset, a timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0)
