"""The operator's one error tree."""

from __future__ import annotations

__all__ = ["BacklogUnavailableError", "InvalidSpecError", "OperatorError"]


class OperatorError(Exception):
    """Base of every operator failure."""


class InvalidSpecError(OperatorError):
    """An IntentWorker the API server accepted but the operator cannot act on."""


class BacklogUnavailableError(OperatorError):
    """A backlog source could not be read; replicas are held, the condition says why."""
