"""Turning request bodies and queries into typed requests, with errors that name the problem."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from aiohttp import web

from intent_fleet.protocol import integer_field, is_number, json_kind, number_field
from intent_fleet.protocol.limits import (
    DEFAULT_KV_TTL,
    DEFAULT_PRIORITY,
    MAX_ATTEMPTS_LIMIT,
    MAX_BACKOFF_BASE,
    MAX_CLAIM_BATCH,
    MAX_DELAY_SECONDS,
    MAX_ERROR_CHARS,
    MAX_GOAL_CHARS,
    MAX_KV_KEY_CHARS,
    MAX_KV_TTL,
    MAX_PRIORITY,
    MAX_SESSION_CHARS,
    MAX_STATS_GOALS,
    MAX_TOKEN_CHARS,
    MAX_WORKER_FIELD_CHARS,
    NAMESPACE_RE,
)

from .backend import PublishRequest, Result
from .errors import ApiError
from .records import Visibility
from .settings import LimitSettings, QueueSettings

__all__ = [
    "ClaimQuery",
    "FulfillRequest",
    "claim_query",
    "fulfill_request",
    "json_body",
    "kv_key",
    "kv_set_request",
    "lease_request",
    "publish_request",
]


def _invalid(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def json_body(body: bytes, *, max_depth: int, required: bool = True) -> dict[str, Any]:
    """A request body that must be a JSON object (or empty, when not required)."""
    if not body.strip():
        if required:
            raise _invalid("invalid_json", "The request body is empty; a JSON object is expected.")
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid("invalid_json", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict):
        raise _invalid(
            "invalid_payload", f"The request body must be a JSON object, not {json_kind(doc)}."
        )
    if _depth(doc) > max_depth:
        raise _invalid("payload_too_deep", f"JSON nesting is deeper than {max_depth} levels.")
    return doc


def _depth(doc: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((v, level + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, level + 1) for v in node if isinstance(v, (dict, list)))
    return deepest


def _bad_field(name: str, text: str) -> ApiError:
    """What the field readers raise for the bus: 400 ``invalid_request``, the field quoted."""
    return ApiError(400, "invalid_request", f"'{name}' {text}.")


#: C0, DEL and C1: never part of a name, and a way to forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The same, but for tab, newline and carriage return (an error text may hold lines).
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def stored_text(
    value: Any, name: str, *, max_chars: int, code: str = "invalid_request", multiline: bool = False
) -> str:
    """A string that is about to be kept: text, valid UTF-8, bounded, no control characters.

    Every string the bus stores (goals, namespaces, KV keys, worker ids, capabilities,
    idempotency keys, key owners, error texts) passes here first. aiohttp hands header and
    path bytes that are not UTF-8 over as lone surrogates, which SQLite cannot encode:
    refusing them here keeps a bad request a 400 instead of a failed write. ``multiline``
    allows tab and newline (an error text), never NUL or other controls.
    """
    if not isinstance(value, str):
        raise _invalid(code, f"{name} must be a string, not {json_kind(value)}.")
    if not value.isascii():  # ASCII is UTF-8; only the rest can hold a lone surrogate
        try:
            value.encode()
        except UnicodeEncodeError:
            raise _invalid(code, f"{name} must be valid UTF-8.") from None
    if len(value) > max_chars:
        raise _invalid(code, f"{name} is longer than {max_chars} characters.")
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        raise _invalid(code, f"{name} must not contain control characters.")
    return value


def _optional_str(doc: Mapping[str, Any], name: str, max_chars: int) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    return stored_text(value, f"'{name}'", max_chars=max_chars, code=f"invalid_{name}")


def header_text(value: str, name: str, *, max_chars: int = 256) -> str:
    """A header value that can be stored (see :func:`stored_text`)."""
    return stored_text(value, name, max_chars=max_chars)


def query_params(request: web.Request) -> Mapping[str, str]:
    """The query decoded strictly: percent-encoded bytes that are not UTF-8 are a 400.

    (aiohttp's own decoding replaces them with U+FFFD, which would then be stored.) As with
    ``request.query.get``, the first value of a repeated parameter counts.
    """
    raw_query = request.rel_url.raw_query_string
    if "%" not in raw_query:
        # Nothing percent-encoded, nothing decoded wrongly: aiohttp's own parse (a claim's).
        # Raw bytes that are not UTF-8 arrive as lone surrogates; stored_text refuses them.
        return request.query
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise _invalid(
            "invalid_request", "The query string is not valid UTF-8 once percent-decoded."
        ) from None
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    return first


def path_text(raw_path: str, name: str, *, max_chars: int) -> str:
    """The last segment of a raw request path, decoded strictly (see :func:`query_params`)."""
    segment = raw_path.split("?", 1)[0].rsplit("/", 1)[-1]
    try:
        value = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _invalid(
            "invalid_request", f"{name} is not valid UTF-8 once percent-decoded."
        ) from None
    return stored_text(value, name, max_chars=max_chars)


#: Intent ids this bus issues are 32 hex characters (uuid4); room for other servers' forms.
_INTENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def intent_id(request: web.Request) -> str:
    """The ``{intent_id}`` of a route; anything that cannot be an id is simply not found."""
    value = request.match_info["intent_id"]
    if not _INTENT_ID_RE.fullmatch(value):
        raise ApiError(404, "not_found", "Intent not found.")
    return value


def namespace_of(value: Any) -> str:
    if value is None or value == "":
        return "default"
    if not isinstance(value, str) or not NAMESPACE_RE.fullmatch(value):
        raise _invalid(
            "invalid_namespace",
            "'namespace' must be 1-64 characters of letters, digits, '_', '.' or '-'.",
        )
    return value


def goal_of(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid("invalid_goal", "'goal' must be a non-empty string.")
    return stored_text(value, "'goal'", max_chars=MAX_GOAL_CHARS, code="invalid_goal")


def publish_request(
    doc: Mapping[str, Any], *, limits: LimitSettings, queue: QueueSettings
) -> PublishRequest:
    if "goal" not in doc or "payload" not in doc:
        missing = [f"'{k}'" for k in ("goal", "payload") if k not in doc]
        raise _invalid("invalid_request", f"Missing {' and '.join(missing)}.")
    goal = goal_of(doc["goal"], required=True)
    assert goal is not None
    # orjson hands back bytes inside a buffer of at least 4 KiB; the payload
    # lives in memory until the intent is done, so keep an exact-size copy.
    payload = bytes(memoryview(orjson.dumps(doc["payload"])))
    if len(payload) > limits.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"The payload is {len(payload)} bytes; this bus accepts at most "
            f"{limits.max_payload_bytes}.",
        )
    visibility = doc.get("visibility") or "private"
    if visibility not in ("private", "public"):
        raise _invalid("invalid_request", "'visibility' must be 'private' or 'public'.")
    return PublishRequest(
        namespace=namespace_of(doc.get("namespace")),
        goal=goal,
        payload=payload,
        visibility=Visibility(visibility),
        priority=integer_field(doc, "priority", DEFAULT_PRIORITY, _bad_field, 0, MAX_PRIORITY),
        delay=number_field(doc, "delay", 0.0, _bad_field, 0.0, MAX_DELAY_SECONDS),
        max_attempts=integer_field(
            doc, "max_attempts", queue.default_max_attempts, _bad_field, 1, MAX_ATTEMPTS_LIMIT
        ),
        backoff_base=number_field(
            doc, "backoff_base", queue.default_backoff_base, _bad_field, 0.0, MAX_BACKOFF_BASE
        ),
        target_worker=_optional_str(doc, "target_worker", MAX_WORKER_FIELD_CHARS),
        required_capability=_optional_str(doc, "required_capability", MAX_WORKER_FIELD_CHARS),
    )


@dataclass(frozen=True, slots=True)
class ClaimQuery:
    namespace: str
    goal: str | None
    publisher: str | None
    wait: float
    worker_id: str | None
    capabilities: frozenset[str]
    #: ``?max=N`` (extension batch_claim): answer a list of up to N; None = one object.
    batch: int | None = None
    #: ``X-Claim-Session`` (extension claim_interrupt).
    session: str | None = None


def claim_query(
    query: Mapping[str, str], headers: Mapping[str, str], *, max_wait: float
) -> ClaimQuery:
    wait_raw = query.get("wait")
    wait = 0.0
    if wait_raw:
        try:
            wait = float(wait_raw)
        except ValueError:
            raise _invalid("invalid_request", "'wait' must be a number of seconds.") from None
        if not math.isfinite(wait) or not 0 <= wait <= max_wait:
            raise _invalid("invalid_request", f"'wait' must be between 0 and {max_wait:g} seconds.")
    worker = headers.get("X-Worker-ID") or None
    if worker is not None:
        header_text(worker, "X-Worker-ID", max_chars=MAX_WORKER_FIELD_CHARS)
    caps = headers.get("X-Worker-Capabilities") or ""
    if caps:
        header_text(caps, "X-Worker-Capabilities", max_chars=4096)
    batch: int | None = None
    if query.get("max"):
        try:
            batch = int(query["max"])
        except ValueError:
            raise _invalid("invalid_request", "'max' must be an integer.") from None
        if not 1 <= batch <= MAX_CLAIM_BATCH:
            raise _invalid("invalid_request", f"'max' must be between 1 and {MAX_CLAIM_BATCH}.")
    return ClaimQuery(
        batch=batch,
        session=claim_session(headers, required=False),
        namespace=namespace_of(query.get("namespace")),
        goal=goal_of(query.get("goal") or None, required=False),
        publisher=_publisher(query.get("publisher") or None),
        wait=wait,
        worker_id=worker,
        capabilities=frozenset(c.strip() for c in caps.split(",") if c.strip()),
    )


def _publisher(value: str | None) -> str | None:
    # A key id (k_ + 12 hex) or "admin"; anything else can match no intent anyway.
    return None if value is None else stored_text(value, "'publisher'", max_chars=64)


def claim_session(headers: Mapping[str, str], *, required: bool) -> str | None:
    session = headers.get("X-Claim-Session") or None
    if session is None:
        if required:
            raise _invalid("invalid_request", "Missing X-Claim-Session header.")
        return None
    if len(session) > MAX_SESSION_CHARS or not (session.isprintable() and session.isascii()):
        raise _invalid(
            "invalid_request",
            f"X-Claim-Session must be 1-{MAX_SESSION_CHARS} printable characters.",
        )
    return session


_TOKEN_RE = re.compile(rf"[!-~]{{1,{MAX_TOKEN_CHARS}}}")


def _token(doc: Mapping[str, Any]) -> str | None:
    token = doc.get("claim_token")
    if token is None:
        return None
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise _invalid(
            "invalid_request",
            f"'claim_token' must be 1-{MAX_TOKEN_CHARS} visible ASCII characters.",
        )
    return token


def lease_request(doc: Mapping[str, Any]) -> tuple[str | None, int]:
    """``/extend_claim`` body: (claim token, seconds)."""
    token = _token(doc)
    if token is None:
        raise _invalid("invalid_request", "Missing 'claim_token'.")
    seconds = doc.get("seconds", 60)
    if not is_number(seconds):
        raise _invalid("invalid_request", "'seconds' must be a number.")
    return token, int(seconds)


@dataclass(frozen=True, slots=True)
class FulfillRequest:
    claim_token: str | None
    result: Result | None


def fulfill_request(doc: Mapping[str, Any], *, limits: LimitSettings) -> FulfillRequest:
    token = _token(doc)
    result_type = doc.get("result_type") or "json"
    if result_type not in ("json", "text"):
        raise _invalid("invalid_result_type", "'result_type' must be 'json' or 'text'.")
    if "result" not in doc:
        return FulfillRequest(claim_token=token, result=None)
    value = doc["result"]
    if result_type == "text":
        if not isinstance(value, str):
            raise _invalid("invalid_result", "A 'text' result must be a string.")
        raw = value.encode()
    else:
        raw = orjson.dumps(value)
    if len(raw) > limits.max_result_bytes:
        raise ApiError(
            413,
            "result_too_large",
            f"The result is {len(raw)} bytes; this bus keeps at most {limits.max_result_bytes}.",
        )
    return FulfillRequest(claim_token=token, result=Result(raw, result_type))


def stats_request(
    doc: Mapping[str, Any], *, max_wait: float
) -> tuple[list[tuple[str, str]], float]:
    """``POST /stats`` body (extension batch_stats): the (namespace, goal) pairs asked about,
    each once in the order given, and how long to wait for work on one of them."""
    goals = doc.get("goals")
    if not isinstance(goals, list) or not 1 <= len(goals) <= MAX_STATS_GOALS:
        raise _invalid("invalid_request", f"'goals' must be a list of 1-{MAX_STATS_GOALS} objects.")
    pairs: dict[tuple[str, str], None] = {}
    for n, entry in enumerate(goals):
        if not isinstance(entry, dict):
            raise _invalid("invalid_request", f"goals[{n}] must be an object.")
        try:
            goal = goal_of(entry.get("goal"), required=True)
            namespace = namespace_of(entry.get("namespace"))
        except ApiError as bad:
            raise ApiError(bad.status, bad.code, f"goals[{n}]: {bad.message}") from None
        assert goal is not None
        pairs[(namespace, goal)] = None
    wait = number_field(doc, "wait", 0.0, _bad_field, 0.0, max_wait)
    return list(pairs), wait


def error_text(value: Any) -> str:
    """A ``/fail`` error as stored: text as sent (cut to its first 500 characters), other
    JSON as its JSON text."""
    error = value if isinstance(value, str) else orjson.dumps(value).decode()
    return stored_text(
        error[:MAX_ERROR_CHARS], "'error'", max_chars=MAX_ERROR_CHARS, multiline=True
    )


def fail_request(doc: Mapping[str, Any]) -> tuple[str | None, str]:
    return _token(doc), error_text(doc.get("error", "Worker failure"))


def kv_key(raw_path: str) -> str:
    """The KV key of ``/set/{key}`` or ``/get/{key}``, from the raw path."""
    key = path_text(raw_path, "The KV key", max_chars=MAX_KV_KEY_CHARS)
    if not key:
        raise _invalid("invalid_request", f"KV keys must be 1-{MAX_KV_KEY_CHARS} characters.")
    return key


def kv_set_request(doc: Mapping[str, Any], *, limits: LimitSettings) -> tuple[str, int]:
    """(value as stored, ttl seconds). Strings are kept; other JSON values as their JSON text."""
    if "value" not in doc:
        raise _invalid("invalid_request", "Missing 'value'.")
    value = doc["value"]
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    if len(text.encode()) > limits.max_kv_value_bytes:
        raise ApiError(
            413, "payload_too_large", f"KV values are limited to {limits.max_kv_value_bytes} bytes."
        )
    ttl_raw = doc.get("ttl", DEFAULT_KV_TTL)
    if not is_number(ttl_raw):
        raise _invalid("invalid_request", "'ttl' must be a number of seconds.")
    # Clamped like the reference server, so SDK defaults keep working.
    return text, int(max(1, min(MAX_KV_TTL, ttl_raw)))


__all__ += [
    "MAX_ERROR_CHARS",
    "error_text",
    "fail_request",
    "goal_of",
    "header_text",
    "intent_id",
    "namespace_of",
    "path_text",
    "query_params",
    "stats_request",
    "stored_text",
]
