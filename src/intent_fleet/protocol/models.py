"""Typed, immutable views of the bus's answers, parsed strictly.

Each model has a ``from_wire(data)`` classmethod taking the decoded JSON. A
malformed answer (not an object, a required field missing, a field of the
wrong type, a boolean where a number belongs) raises
:class:`IntentBusProtocolError` naming the model and the field, never a
``KeyError``/``TypeError`` from deep inside a worker loop. Unknown fields are
ignored so a newer bus can add fields without breaking older clients. Error
messages name types, never values: values can be payloads or secrets.

Optional fields are optional because v1.1 servers do not send them; a field
that is present must still have the right type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final, Self

from .errors import IntentBusProtocolError

__all__ = [
    "Ack",
    "BusStats",
    "ClaimedIntent",
    "DeadLetter",
    "GoalStats",
    "Health",
    "IntentResult",
    "IntentStatus",
    "KeyInfo",
    "KvValue",
    "ProtocolVersion",
    "PublishReceipt",
]

RESULT_TYPES: Final = frozenset({"json", "text"})

_MISSING: Final = object()


class ProtocolVersion(StrEnum):
    """The two protocol versions live in the wild."""

    V1_1 = "1.1"
    V2_1 = "2.1"

    @classmethod
    def from_header(cls, value: str | None) -> ProtocolVersion | None:
        """Map an ``X-Intent-Version`` value to a protocol version.

        v1.1 servers send ``1.0``, v2.1 servers ``2.1``: only the major number
        tells them apart. Anything else (absent, garbage, a future 3.x) is
        ``None``, so callers fall back instead of guessing.
        """
        if value is None:
            return None
        major = value.strip().split(".", 1)[0]
        if major == "1":
            return cls.V1_1
        if major == "2":
            return cls.V2_1
        return None


# --- field readers: one place that knows what "strict" means ----------------


def _document(data: object, model: str) -> Mapping[str, object]:
    if not isinstance(data, dict):
        raise IntentBusProtocolError(f"{model}: expected a JSON object, got {_kind(data)}.")
    return data


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _wrong(model: str, name: str, expected: str, value: object) -> IntentBusProtocolError:
    return IntentBusProtocolError(
        f"{model}: field {name!r} must be {expected}, got {_kind(value)}."
    )


def _str(doc: Mapping[str, object], name: str, model: str, *, non_empty: bool = False) -> str:
    value = doc.get(name, _MISSING)
    if value is _MISSING:
        raise IntentBusProtocolError(f"{model}: required field {name!r} is missing.")
    if not isinstance(value, str):
        raise _wrong(model, name, "a string", value)
    if non_empty and not value:
        raise IntentBusProtocolError(f"{model}: field {name!r} must not be empty.")
    return value


def _list(doc: Mapping[str, object], name: str, model: str) -> list[object]:
    value = doc.get(name, _MISSING)
    if value is _MISSING:
        raise IntentBusProtocolError(f"{model}: required field {name!r} is missing.")
    if not isinstance(value, list):
        raise _wrong(model, name, "a list", value)
    return value


def _opt_str(doc: Mapping[str, object], name: str, model: str) -> str | None:
    value = doc.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _wrong(model, name, "a string or null", value)


def _int(doc: Mapping[str, object], name: str, model: str) -> int:
    value = doc.get(name, _MISSING)
    if value is _MISSING:
        raise IntentBusProtocolError(f"{model}: required field {name!r} is missing.")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(model, name, "an integer", value)
    return value


def _opt_int(doc: Mapping[str, object], name: str, model: str) -> int | None:
    if doc.get(name) is None:
        return None
    return _int(doc, name, model)


def _number(doc: Mapping[str, object], name: str, model: str) -> float:
    value = doc.get(name, _MISSING)
    if value is _MISSING:
        raise IntentBusProtocolError(f"{model}: required field {name!r} is missing.")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(model, name, "a number", value)
    if not math.isfinite(value):
        raise _wrong(model, name, "a finite number", value)
    return float(value)


def _opt_number(doc: Mapping[str, object], name: str, model: str) -> float | None:
    if doc.get(name) is None:
        return None
    return _number(doc, name, model)


# --- publish / claim ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishReceipt:
    """The bus's answer to ``POST /intent``."""

    id: str
    status: str = "published"
    #: v1.1 servers have no namespaces; their intents live in the default one.
    namespace: str = "default"

    @classmethod
    def from_wire(cls, data: object) -> Self:
        doc = _document(data, "publish answer")
        # Only the id is indispensable: refusing an answer whose intent was
        # created would make the caller publish it again.
        return cls(
            id=_str(doc, "id", "publish answer", non_empty=True),
            status=_opt_str(doc, "status", "publish answer") or "published",
            namespace=_opt_str(doc, "namespace", "publish answer") or "default",
        )


@dataclass(frozen=True, slots=True)
class ClaimedIntent:
    """An intent this client now holds the lease on.

    ``claim_token`` is ``None`` on v1.1 servers, which tie the lease to the key.
    """

    id: str
    goal: str
    payload: Any
    namespace: str = "default"
    claim_token: str | None = None
    #: Lease length in seconds; the protocol's default when the server is silent.
    claim_timeout: int = 60
    #: This delivery's attempt number (1 on first delivery).
    claim_attempts: int = 1
    priority: int = 100
    target_worker: str | None = None
    required_capability: str | None = None
    visibility: str | None = None
    max_attempts: int | None = None
    #: Unix time the lease ends, when the server says (intent-fleet's bus does).
    claim_expires_at: float | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "claim answer"
        doc = _document(data, m)
        if "payload" not in doc:
            raise IntentBusProtocolError(f"{m}: required field 'payload' is missing.")
        timeout = _opt_int(doc, "claim_timeout", m)
        attempts = _opt_int(doc, "claim_attempts", m)
        priority = _opt_int(doc, "priority", m)
        if timeout is not None and timeout < 0:
            raise IntentBusProtocolError(f"{m}: field 'claim_timeout' must not be negative.")
        return cls(
            id=_str(doc, "id", m, non_empty=True),
            goal=_str(doc, "goal", m),
            payload=doc["payload"],
            namespace=_opt_str(doc, "namespace", m) or "default",
            claim_token=_opt_str(doc, "claim_token", m),
            claim_timeout=60 if timeout is None else timeout,
            claim_attempts=1 if attempts is None else attempts,
            priority=100 if priority is None else priority,
            target_worker=_opt_str(doc, "target_worker", m),
            required_capability=_opt_str(doc, "required_capability", m),
            visibility=_opt_str(doc, "visibility", m),
            max_attempts=_opt_int(doc, "max_attempts", m),
            claim_expires_at=_opt_number(doc, "claim_expires_at", m),
        )


# --- status / result ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntentStatus:
    """``GET /status/<id>``: where an intent is in its life cycle."""

    id: str
    status: str
    namespace: str | None = None
    goal: str | None = None
    priority: int | None = None
    visibility: str | None = None
    claim_attempts: int | None = None
    max_attempts: int | None = None
    run_at: float | None = None
    claim_expires_at: float | None = None
    target_worker: str | None = None
    required_capability: str | None = None
    completed_at: float | None = None
    last_error: str | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        return cls(**_status_fields(_document(data, "status answer"), "status answer"))


def _status_fields(doc: Mapping[str, object], m: str) -> dict[str, Any]:
    return {
        "id": _str(doc, "id", m, non_empty=True),
        "status": _str(doc, "status", m, non_empty=True),
        "namespace": _opt_str(doc, "namespace", m),
        "goal": _opt_str(doc, "goal", m),
        "priority": _opt_int(doc, "priority", m),
        "visibility": _opt_str(doc, "visibility", m),
        "claim_attempts": _opt_int(doc, "claim_attempts", m),
        "max_attempts": _opt_int(doc, "max_attempts", m),
        "run_at": _opt_number(doc, "run_at", m),
        "claim_expires_at": _opt_number(doc, "claim_expires_at", m),
        "target_worker": _opt_str(doc, "target_worker", m),
        "required_capability": _opt_str(doc, "required_capability", m),
        "completed_at": _opt_number(doc, "completed_at", m),
        "last_error": _opt_str(doc, "last_error", m),
    }


@dataclass(frozen=True, slots=True)
class IntentResult(IntentStatus):
    """``GET /result/<id>``: the status plus what the worker handed back."""

    #: A JSON value, or a string when ``result_type`` is ``"text"``.
    result: Any = None
    result_type: str = "json"
    error: str | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "result answer"
        doc = _document(data, m)
        fields = _status_fields(doc, m)
        result_type = _opt_str(doc, "result_type", m) or "json"
        if result_type not in RESULT_TYPES:
            raise IntentBusProtocolError(f"{m}: field 'result_type' must be 'json' or 'text'.")
        result = doc.get("result")
        if result_type == "text" and result is not None and not isinstance(result, str):
            raise _wrong(m, "result", "a string for a text result", result)
        return cls(
            **fields, result=result, result_type=result_type, error=_opt_str(doc, "error", m)
        )


# --- small acknowledgements --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The small ``{"ok": true, ...}`` answers of lease and admin calls.

    Every field is optional: v1.1 servers answer these calls with less.
    """

    id: str | None = None
    #: The intent's state afterwards (``/fail``: ``open`` or ``dead``).
    status: str | None = None
    #: ``/extend_claim``: seconds the lease was extended by.
    extended_by: int | None = None
    #: ``/admin/purge``: intents deleted.
    deleted: int | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "acknowledgement"
        if data is None:  # an empty 200 body
            return cls()
        doc = _document(data, m)
        return cls(
            id=_opt_str(doc, "id", m),
            status=_opt_str(doc, "status", m),
            extended_by=_opt_int(doc, "extended_by", m),
            deleted=_opt_int(doc, "deleted", m),
        )


@dataclass(frozen=True, slots=True)
class KvValue:
    """``GET /get/<key>``: values are stored and returned as strings."""

    value: str | None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        doc = _document(data, "kv answer")
        if "value" not in doc:
            raise IntentBusProtocolError("kv answer: required field 'value' is missing.")
        return cls(value=_opt_str(doc, "value", "kv answer"))


# --- health and backlog ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: what the bus is and which extensions it offers."""

    version: str | None = None
    protocol: ProtocolVersion | None = None
    features: frozenset[str] = frozenset()
    server: str | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "health answer"
        doc = _document(data, m)
        raw_features = doc.get("features")
        if raw_features is None:
            features: frozenset[str] = frozenset()
        elif isinstance(raw_features, list) and all(isinstance(f, str) for f in raw_features):
            features = frozenset(raw_features)
        else:
            raise _wrong(m, "features", "a list of strings", raw_features)
        protocol = _opt_str(doc, "protocol", m)
        return cls(
            version=_opt_str(doc, "version", m),
            protocol=ProtocolVersion.from_header(protocol),
            features=features,
            server=_opt_str(doc, "server", m),
        )

    def with_protocol(self, protocol: ProtocolVersion | None) -> Health:
        """A copy with ``protocol`` filled in when the body did not say."""
        return self if self.protocol is not None else replace(self, protocol=protocol)


@dataclass(frozen=True, slots=True)
class GoalStats:
    """Backlog of one goal in one namespace: what an autoscaler scales on."""

    namespace: str
    goal: str
    ready: int
    delayed: int
    claimed: int
    dead: int
    oldest_ready_age_seconds: float

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "stats entry"
        doc = _document(data, m)
        return cls(
            namespace=_str(doc, "namespace", m),
            goal=_str(doc, "goal", m),
            ready=_int(doc, "ready", m),
            delayed=_int(doc, "delayed", m),
            claimed=_int(doc, "claimed", m),
            dead=_int(doc, "dead", m),
            oldest_ready_age_seconds=_number(doc, "oldest_ready_age_seconds", m),
        )


@dataclass(frozen=True, slots=True)
class BusStats:
    """``GET /stats``: backlog per goal, and the bus clock when it was taken."""

    goals: tuple[GoalStats, ...]
    ts: float | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "stats answer"
        doc = _document(data, m)
        goals = _list(doc, "goals", m)
        return cls(goals=tuple(GoalStats.from_wire(g) for g in goals), ts=_opt_number(doc, "ts", m))


# --- admin -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A tenant API key; ``api_key`` (the secret) only when it was just created."""

    api_key: str | None
    id: str
    owner: str
    created_at: float | None = None
    revoked_at: float | None = None

    def __repr__(self) -> str:
        # The secret must not end up in logs through a repr.
        secret = "<redacted>" if self.api_key is not None else "None"
        return f"KeyInfo(api_key={secret}, id={self.id!r}, owner={self.owner!r})"

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "key answer"
        doc = _document(data, m)
        return cls(
            api_key=_opt_str(doc, "api_key", m),
            id=_str(doc, "id", m, non_empty=True),
            owner=_str(doc, "owner", m),
            created_at=_opt_number(doc, "created_at", m),
            revoked_at=_opt_number(doc, "revoked_at", m),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of ``GET /admin/dead``: an intent that ran out of attempts."""

    intent_id: str
    namespace: str
    goal: str
    attempts: int
    reason: str | None = None
    created_at: float | None = None
    died_at: float | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        m = "dead letter"
        doc = _document(data, m)
        return cls(
            intent_id=_str(doc, "intent_id", m, non_empty=True),
            namespace=_str(doc, "namespace", m),
            goal=_str(doc, "goal", m),
            attempts=_int(doc, "attempts", m),
            reason=_opt_str(doc, "reason", m),
            created_at=_opt_number(doc, "created_at", m),
            died_at=_opt_number(doc, "died_at", m),
        )


def list_from_wire(data: object, *, field: str, model: str) -> list[object]:
    """The list under ``field`` of an answer object (``{"keys": [...]}``)."""
    return _list(_document(data, model), field, model)
