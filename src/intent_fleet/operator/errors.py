"""The operator's one error tree.

::

    OperatorError
    ├── InvalidSpecError          an IntentWorker the operator cannot act on (fix the spec)
    │   ├── InvalidNameError      a name that cannot be an object's name (never sent anywhere)
    │   └── SpecRefusedError      a spec the operator will not act on, for safety
    │       ├── NotPermittedError     it names a Secret or ServiceAccount that has not opted in
    │       └── NotOwnedError         its Deployment exists but belongs to someone else
    ├── BacklogUnavailableError   a backlog source could not be read (replicas are held)
    │   └── DestinationRefusedError   the source URL leads where the operator may not go
    └── KubeApiError              the API server refused a call (``status`` is its HTTP code)
        └── KubeNotFoundError

``SpecRefusedError`` carries the condition ``reason`` it is reported under, so the controller
has one way to turn any refusal into a condition and an Event.
"""

from __future__ import annotations

__all__ = [
    "BacklogUnavailableError",
    "DestinationRefusedError",
    "InvalidNameError",
    "InvalidSpecError",
    "KubeApiError",
    "KubeNotFoundError",
    "NotOwnedError",
    "NotPermittedError",
    "OperatorError",
    "SpecRefusedError",
]


class OperatorError(Exception):
    """Base of every operator failure."""


class InvalidSpecError(OperatorError):
    """An IntentWorker the API server accepted but the operator cannot act on."""

    #: The condition reason this error is reported under.
    reason = "InvalidSpec"


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


class BacklogUnavailableError(OperatorError):
    """A backlog source could not be read; replicas are held, the condition says why."""


class DestinationRefusedError(BacklogUnavailableError):
    """A backlog URL resolves to an address the operator's egress policy refuses."""


class KubeApiError(OperatorError):
    """The API server refused a call; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class KubeNotFoundError(KubeApiError):
    pass
