"""Typed, immutable views of the bus's answers, parsed strictly.

Each model is a frozen ``msgspec`` struct with a ``from_wire(data)`` classmethod taking the
decoded JSON. A malformed answer (not an object, a required field missing, a field of the
wrong type, a boolean where a number belongs) raises :class:`IntentBusProtocolError` naming
the model and the field, never a ``KeyError``/``TypeError`` from deep inside a worker loop.
Unknown fields are ignored so a newer bus can add fields without breaking older clients.
Error messages name types, never values: values can be payloads or secrets.

Optional fields are optional because v1.1 servers do not send them; a field that is present
must still have the right type. A ``null`` where the model has a default (``namespace``,
``priority``...) counts as absent, as it always has for this client.
"""

from __future__ import annotations

import functools
import re
import sys
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Self, TypeVar

import msgspec

from .checks import json_kind
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

#: A non-empty string (ids).
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
#: A float that is a real number: JSON has no NaN or infinity, a hand-built dict can.
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


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


# --- parsing: one place that knows what "strict" means -----------------------


class _Model(msgspec.Struct, frozen=True):
    """Base of the answers: frozen, compared by value, parsed by :func:`parse`."""

    #: What errors call this answer.
    wire_name: ClassVar[str]

    @classmethod
    def from_wire(cls, data: object) -> Self:
        return parse(cls, data, cls.wire_name)


#: msgspec's "... - at `$.goals[0].ready`": the message, then where.
_WHERE: Final = re.compile(r"^(?P<what>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)

_MISSING: Final = re.compile(r"Object missing required field `(?P<field>[^`]*)`")

M = TypeVar("M", bound=msgspec.Struct)


def parse(model: type[M], data: object, name: str) -> M:
    """``data`` as a ``model``, or :class:`IntentBusProtocolError` naming the field."""
    if not isinstance(data, dict):
        raise IntentBusProtocolError(f"{name}: expected a JSON object, got {json_kind(data)}.")
    defaulted = _null_means_default(model)
    if any(data.get(field, 0) is None for field in defaulted):
        data = {k: v for k, v in data.items() if v is not None or k not in defaulted}
    try:
        return msgspec.convert(data, model, strict=True)
    except msgspec.ValidationError as exc:
        # msgspec's messages name the type expected and the one found, never the value.
        found = _WHERE.match(str(exc))
        assert found is not None  # the pattern matches any text
        where = f"{found['path']}." if found["path"] else ""
        missing = _MISSING.fullmatch(found["what"])
        if missing:
            raise IntentBusProtocolError(
                f"{name}: required field {where + missing['field']!r} is missing."
            ) from None
        what = found["what"][:1].lower() + found["what"][1:]
        field = f"field {found['path']!r}: " if found["path"] else ""
        raise IntentBusProtocolError(f"{name}: {field}{what}.") from None


@functools.cache
def _null_means_default(model: type[msgspec.Struct]) -> frozenset[str]:
    """Fields with a default that ``null`` is not: there ``null`` means "use the default"."""
    return frozenset(
        f.encode_name
        for f in msgspec.structs.fields(model)
        if f.default not in (msgspec.NODEFAULT, None) or f.default_factory is not msgspec.NODEFAULT
    )


# --- publish / claim ---------------------------------------------------------


class PublishReceipt(_Model, frozen=True):
    """The bus's answer to ``POST /intent``.

    Only the id is indispensable: refusing an answer whose intent was created would make
    the caller publish it again.
    """

    wire_name = "publish answer"

    id: NonEmpty
    status: str = "published"
    #: v1.1 servers have no namespaces; their intents live in the default one.
    namespace: str = "default"


class ClaimedIntent(_Model, frozen=True):
    """An intent this client now holds the lease on.

    ``claim_token`` is ``None`` on v1.1 servers, which tie the lease to the key.
    """

    wire_name = "claim answer"

    id: NonEmpty
    goal: str
    #: Any JSON value, ``null`` included; but the field must be there.
    payload: Any
    namespace: str = "default"
    claim_token: str | None = None
    #: Lease length in seconds; the protocol's default when the server is silent.
    claim_timeout: NonNegative = 60
    #: This delivery's attempt number (1 on first delivery).
    claim_attempts: int = 1
    priority: int = 100
    target_worker: str | None = None
    required_capability: str | None = None
    visibility: str | None = None
    max_attempts: int | None = None
    #: Unix time the lease ends, when the server says (intent-fleet's bus does).
    claim_expires_at: Finite | None = None


# --- status / result ---------------------------------------------------------


class IntentStatus(_Model, frozen=True):
    """``GET /status/<id>``: where an intent is in its life cycle."""

    wire_name = "status answer"

    id: NonEmpty
    status: NonEmpty
    namespace: str | None = None
    goal: str | None = None
    priority: int | None = None
    visibility: str | None = None
    claim_attempts: int | None = None
    max_attempts: int | None = None
    run_at: Finite | None = None
    claim_expires_at: Finite | None = None
    target_worker: str | None = None
    required_capability: str | None = None
    completed_at: Finite | None = None
    last_error: str | None = None


class IntentResult(IntentStatus, frozen=True):
    """``GET /result/<id>``: the status plus what the worker handed back."""

    wire_name = "result answer"

    #: A JSON value, or a string when ``result_type`` is ``"text"``.
    result: Any = None
    result_type: str = "json"
    error: str | None = None

    def __post_init__(self) -> None:
        # Raised inside msgspec, which turns these into its ValidationError.
        if self.result_type not in RESULT_TYPES:
            raise ValueError("field 'result_type' must be 'json' or 'text'")
        if self.result_type == "text" and not isinstance(self.result, str | None):
            raise ValueError("field 'result' must be a string for a text result")


# --- small acknowledgements --------------------------------------------------


class Ack(_Model, frozen=True):
    """The small ``{"ok": true, ...}`` answers of lease and admin calls.

    Every field is optional: v1.1 servers answer these calls with less.
    """

    wire_name = "acknowledgement"

    id: str | None = None
    #: The intent's state afterwards (``/fail``: ``open`` or ``dead``).
    status: str | None = None
    #: ``/extend_claim``: seconds the lease was extended by.
    extended_by: int | None = None
    #: ``/admin/purge``: intents deleted.
    deleted: int | None = None
    #: ``/claim/interrupt``: parked claims ended.
    interrupted: int | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        if data is None:  # an empty 200 body
            return cls()
        return super().from_wire(data)


class KvValue(_Model, frozen=True):
    """``GET /get/<key>``: values are stored and returned as strings."""

    wire_name = "kv answer"

    #: Required, but may be null.
    value: str | None


# --- health and backlog ------------------------------------------------------


class Health(_Model, frozen=True):
    """``GET /health``: what the bus is and which extensions it offers."""

    wire_name = "health answer"

    version: str | None = None
    protocol: ProtocolVersion | None = None
    features: frozenset[str] = frozenset()
    server: str | None = None

    @classmethod
    def from_wire(cls, data: object) -> Self:
        # The body says "2.1" or "1.0" or something newer: read as text, mapped by major.
        wire = parse(_HealthWire, data, cls.wire_name)
        return cls(
            version=wire.version,
            protocol=ProtocolVersion.from_header(wire.protocol),
            features=wire.features,
            server=wire.server,
        )

    def with_protocol(self, protocol: ProtocolVersion | None) -> Health:
        """A copy with ``protocol`` filled in when the body did not say."""
        if self.protocol is not None:
            return self
        return msgspec.structs.replace(self, protocol=protocol)


class _HealthWire(msgspec.Struct, frozen=True):
    version: str | None = None
    protocol: str | None = None
    features: frozenset[str] = frozenset()
    server: str | None = None


class GoalStats(_Model, frozen=True):
    """Backlog of one goal in one namespace: what an autoscaler scales on."""

    wire_name = "stats entry"

    namespace: str
    goal: str
    ready: int
    delayed: int
    claimed: int
    dead: int
    oldest_ready_age_seconds: Finite


class BusStats(_Model, frozen=True):
    """``GET /stats``: backlog per goal, and the bus clock when it was taken."""

    wire_name = "stats answer"

    goals: tuple[GoalStats, ...]
    ts: Finite | None = None


# --- admin -------------------------------------------------------------------


class KeyInfo(_Model, frozen=True):
    """A tenant API key; ``api_key`` (the secret) only when it was just created."""

    wire_name = "key answer"

    id: NonEmpty
    owner: str
    api_key: str | None = None
    created_at: Finite | None = None
    revoked_at: Finite | None = None

    def __repr__(self) -> str:
        # The secret must not end up in logs through a repr.
        secret = "<redacted>" if self.api_key is not None else "None"
        return f"KeyInfo(api_key={secret}, id={self.id!r}, owner={self.owner!r})"


class DeadLetter(_Model, frozen=True):
    """One entry of ``GET /admin/dead``: an intent that ran out of attempts."""

    wire_name = "dead letter"

    intent_id: NonEmpty
    namespace: str
    goal: str
    attempts: int
    reason: str | None = None
    created_at: Finite | None = None
    died_at: Finite | None = None


def list_from_wire(data: object, *, field: str, model: str) -> list[object]:
    """The list under ``field`` of an answer object (``{"keys": [...]}``)."""
    if not isinstance(data, dict):
        raise IntentBusProtocolError(f"{model}: expected a JSON object, got {json_kind(data)}.")
    if field not in data:
        raise IntentBusProtocolError(f"{model}: required field {field!r} is missing.")
    items = data[field]
    if not isinstance(items, list):
        raise IntentBusProtocolError(
            f"{model}: field {field!r}: expected `array`, got {json_kind(items)}."
        )
    return items
