"""The async client of the Intent Protocol (v1.1 and v2.1), for publishers and workers.

Operation safety decides retries (see :mod:`.transport` for how):

==========================  ========  ==========================================
operation                   retried   why
==========================  ========  ==========================================
publish                     yes       one ``Idempotency-Key`` per call: a repeat
                                      returns the first answer, no duplicate
kv_set                      yes       setting the same value twice is harmless
kv_get, status, result,     yes       reads
health, stats
claim                       never     a lost answer would leave a lease nobody
                                      knows about; the next claim will do
extend, fulfill, fail,      never     a repeat after a lost answer can hit a
release                               lease already gone and mislead the caller
==========================  ========  ==========================================

Arguments are checked before anything is sent, so a caller's mistake is an
:class:`IntentBusError` naming the argument, not a 400 from the bus.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Unpack
from urllib.parse import quote

from .checks import is_int, is_number
from .errors import IntentBusError, IntentBusProtocolError
from .limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_CLAIM_BATCH,
    MAX_GOAL_CHARS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_KV_TTL,
    MAX_PRIORITY,
    MAX_SESSION_CHARS,
    MAX_STATS_GOALS,
    MAX_WORKER_FIELD_CHARS,
    NAMESPACE_RE,
)
from .models import (
    Ack,
    BusStats,
    ClaimedIntent,
    Health,
    IntentResult,
    IntentStatus,
    KvValue,
    ProtocolVersion,
    PublishReceipt,
    list_from_wire,
)
from .retry import parse_retry_after
from .settings import ClientSettings
from .transport import VERSION_HEADER, ApiKeySigner, Connection, ConnectionOptions

__all__ = ["BusClient", "ClaimOutcome"]

VISIBILITIES: Final = frozenset({"private", "public"})
RESULT_TYPES: Final = frozenset({"json", "text"})


class _Unset:
    """Marks "no result given", since ``None`` is a valid JSON result."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """What a claim got: an intent, or nothing and how long the bus asks to wait."""

    intent: ClaimedIntent | None
    #: Seconds from the empty answer's ``Retry-After``, when it sent one.
    retry_after: float | None = None
    #: Every intent of a batch claim (``batch=N``), the first one included.
    batch: tuple[ClaimedIntent, ...] = ()

    @property
    def intents(self) -> tuple[ClaimedIntent, ...]:
        """All intents this claim got: none, one, or a batch."""
        if self.batch:
            return self.batch
        return (self.intent,) if self.intent is not None else ()


class BusClient(Connection):
    """One tenant's connection to a bus: publish, claim and settle intents, KV, stats."""

    def __init__(
        self, *, settings: ClientSettings, api_key: str, **options: Unpack[ConnectionOptions]
    ) -> None:
        super().__init__(settings=settings, auth=ApiKeySigner(api_key), **options)
        self._health: Health | None = None

    @property
    def protocol(self) -> ProtocolVersion | None:
        """The version named by the latest answer's ``X-Intent-Version`` (None until known)."""
        return self._transport.protocol

    # --- publishing ------------------------------------------------------

    async def publish(
        self,
        goal: str,
        payload: Any,
        *,
        namespace: str | None = None,
        visibility: str = "private",
        priority: int | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        target_worker: str | None = None,
        required_capability: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishReceipt:
        """Publish an intent; options left ``None`` are not sent (the bus's defaults apply).

        Retried safely: every try carries the same ``Idempotency-Key`` (a fresh
        random one unless the caller passes its own).
        """
        _check_goal(goal)
        if namespace is not None:
            _check_namespace(namespace)
        if visibility not in VISIBILITIES:
            raise IntentBusError("visibility must be 'private' or 'public'.")
        if priority is not None:
            _check_int("priority", priority, low=0, high=MAX_PRIORITY)
        if delay is not None:
            _check_seconds("delay", delay)
        if max_attempts is not None:
            _check_int("max_attempts", max_attempts, low=1, high=MAX_ATTEMPTS_LIMIT)
        if backoff_base is not None:
            _check_seconds("backoff_base", backoff_base)
        for name, value in (
            ("target_worker", target_worker),
            ("required_capability", required_capability),
        ):
            if value is not None:
                _check_text(name, value, limit=MAX_WORKER_FIELD_CHARS)
        if idempotency_key is None:
            idempotency_key = secrets.token_hex(16)
        else:
            _check_text("idempotency_key", idempotency_key, limit=MAX_IDEMPOTENCY_KEY_CHARS)
        document: dict[str, Any] = {"goal": goal, "payload": payload, "visibility": visibility}
        optional = {
            "namespace": namespace,
            "priority": priority,
            "delay": delay,
            "max_attempts": max_attempts,
            "backoff_base": backoff_base,
            "target_worker": target_worker,
            "required_capability": required_capability,
        }
        document.update({k: v for k, v in optional.items() if v is not None})
        answer = await self._transport.request(
            "POST", "/intent", json=document, retry=True, idempotency_key=idempotency_key
        )
        return PublishReceipt.from_wire(answer.json())

    # --- working ---------------------------------------------------------

    async def claim(
        self,
        goal: str | None = None,
        *,
        namespace: str | None = None,
        publisher: str | None = None,
        worker_id: str | None = None,
        capabilities: Iterable[str] | str = (),
        wait: float | None = None,
        batch: int | None = None,
        session: str | None = None,
    ) -> ClaimOutcome:
        """Claim the next intent, or learn there is none (never retried).

        ``wait`` asks the bus to hold the request up to that many seconds for
        an intent to arrive (long poll; cut to ``settings.max_wait_seconds``);
        the request timeout grows by the same amount. ``capabilities`` is a
        list, or a comma-separated string as the SDK accepts. ``batch=N``
        (extension ``batch_claim``) takes up to N intents in one round trip.
        """
        if batch is not None:
            _check_int("batch", batch, low=1, high=MAX_CLAIM_BATCH)
        if goal is not None:
            _check_goal(goal)
        if namespace is not None:
            _check_namespace(namespace)
        if wait is not None:
            _check_seconds("wait", wait)
            wait = min(wait, self._settings.max_wait_seconds)
        headers = _worker_headers(worker_id, capabilities, session)
        params = {
            "goal": goal,
            "namespace": namespace,
            "publisher": publisher,
            "wait": wait,
            "max": batch,
        }
        answer = await self._transport.request(
            "POST", "/claim", params=params, headers=headers, extra_timeout=wait or 0.0
        )
        if answer.status == 204:
            retry_after = parse_retry_after(
                answer.headers.get("Retry-After"), now=self._transport.clock.wall()
            )
            return ClaimOutcome(intent=None, retry_after=retry_after)
        if batch is None:
            return ClaimOutcome(intent=ClaimedIntent.from_wire(answer.json()))
        items = list_from_wire(answer.json(), field="intents", model="ClaimBatch")
        intents = tuple(ClaimedIntent.from_wire(item) for item in items)
        if not intents:
            raise IntentBusProtocolError("ClaimBatch: 'intents' is empty on a 200 answer")
        return ClaimOutcome(intent=intents[0], batch=intents)

    async def interrupt_claims(self, session: str) -> int:
        """End this session's parked long-poll claims now (extension ``claim_interrupt``).

        A draining worker calls it so a parked claim answers "nothing" at once;
        a claim already handed an intent still gets it. Safe to repeat.
        """
        _check_text("session", session, limit=MAX_SESSION_CHARS)
        answer = await self._transport.request(
            "POST", "/claim/interrupt", headers={"X-Claim-Session": session}, retry=True
        )
        count = Ack.from_wire(answer.json()).interrupted
        if count is None:
            raise IntentBusProtocolError(
                "claim interrupt answer: required field 'interrupted' is missing."
            )
        return count

    async def extend(self, intent_id: str, *, claim_token: str, seconds: int) -> int:
        """Renew the lease by ``seconds`` (the bus clamps to 10..3600); returns what it granted.

        Raises :class:`IntentBusLeaseLostError` when the lease is already gone.
        """
        _check_text("claim_token", claim_token, limit=1024)
        _check_int("seconds", seconds, low=1, high=86400)
        answer = await self._transport.request(
            "POST",
            _item_path("/extend_claim/", intent_id),
            json={"claim_token": claim_token, "seconds": seconds},
        )
        ack = Ack.from_wire(answer.json(allow_empty=True))
        if ack.extended_by is None:
            raise IntentBusProtocolError(
                "extend_claim answer: required field 'extended_by' is missing."
            )
        return ack.extended_by

    async def fulfill(
        self,
        intent_id: str,
        *,
        claim_token: str | None = None,
        result: Any = _UNSET,
        result_type: str = "json",
    ) -> None:
        """Mark a claimed intent done, optionally with a result (never retried).

        Without ``claim_token`` the bus accepts it from the key holding the
        lease (v1.1 semantics). A ``"text"`` result must be a string.
        """
        if result_type not in RESULT_TYPES:
            raise IntentBusError("result_type must be 'json' or 'text'.")
        if result_type == "text" and not isinstance(result, str):
            raise IntentBusError("a 'text' result must be a string.")
        document: dict[str, Any] = {}
        if claim_token is not None:
            _check_text("claim_token", claim_token, limit=1024)
            document["claim_token"] = claim_token
        if not isinstance(result, _Unset):
            document["result"] = result
            document["result_type"] = result_type
        # No body at all when there is nothing to say, as v1.1 clients send it.
        await self._transport.request(
            "POST", _item_path("/fulfill/", intent_id), json=document or None
        )

    async def fail(
        self, intent_id: str, *, claim_token: str | None = None, error: str = "Worker failure"
    ) -> str | None:
        """Report a failed attempt; returns the intent's new state (``open``/``dead``) if told."""
        document: dict[str, Any] = {"error": error}
        if claim_token is not None:
            _check_text("claim_token", claim_token, limit=1024)
            document["claim_token"] = claim_token
        answer = await self._transport.request(
            "POST", _item_path("/fail/", intent_id), json=document
        )
        return Ack.from_wire(answer.json(allow_empty=True)).status

    async def release(self, intent_id: str, *, claim_token: str | None = None) -> None:
        """Hand an unstarted intent back at once, refunding the attempt.

        intent-fleet's ``release_claim`` extension (see :meth:`supports`): a
        draining worker uses it instead of letting the lease run out.
        """
        document: dict[str, Any] | None = None
        if claim_token is not None:
            _check_text("claim_token", claim_token, limit=1024)
            document = {"claim_token": claim_token}
        await self._transport.request("POST", _item_path("/release/", intent_id), json=document)

    # --- reading ---------------------------------------------------------

    async def status(self, intent_id: str) -> IntentStatus:
        answer = await self._transport.request("GET", _item_path("/status/", intent_id), retry=True)
        return IntentStatus.from_wire(answer.json())

    async def result(self, intent_id: str) -> IntentResult:
        answer = await self._transport.request("GET", _item_path("/result/", intent_id), retry=True)
        return IntentResult.from_wire(answer.json())

    async def kv_set(self, key: str, value: Any, *, ttl: int = 600) -> None:
        """Store ``value`` (a string, or any JSON value, kept as its JSON text) for ``ttl`` s."""
        _check_int("ttl", ttl, low=1, high=MAX_KV_TTL)
        await self._transport.request(
            "POST",
            _item_path("/set/", key),
            json={"value": value, "ttl": ttl},
            retry=True,
            idempotency_key=secrets.token_hex(16),
        )

    async def kv_get(self, key: str) -> str | None:
        """The stored string, or ``None`` when the key is missing or expired."""
        answer = await self._transport.request(
            "GET", _item_path("/get/", key), retry=True, accept=frozenset({404})
        )
        if answer.status == 404:
            return None
        return KvValue.from_wire(answer.json()).value

    async def stats(self, namespace: str | None = None, goal: str | None = None) -> BusStats:
        """Backlog per goal (intent-fleet's ``backlog_stats`` extension)."""
        if namespace is not None:
            _check_namespace(namespace)
        if goal is not None:
            _check_goal(goal)
        answer = await self._transport.request(
            "GET", "/stats", params={"namespace": namespace, "goal": goal}, retry=True
        )
        return BusStats.from_wire(answer.json())

    async def stats_of(
        self, goals: Iterable[tuple[str, str]], *, wait: float | None = None
    ) -> BusStats:
        """Backlog of many (namespace, goal) pairs in one call, in the order given, zeros for
        an empty goal (extension ``batch_stats``; at most 1000 pairs).

        ``wait`` (extension ``backlog_wait``): the answer comes once one of the goals has
        work this key could claim, or after ``wait`` seconds (capped like a claim's).
        """
        pairs = [{"namespace": ns, "goal": goal} for ns, goal in goals]
        for pair in pairs:
            _check_namespace(pair["namespace"])
            _check_goal(pair["goal"])
        if not 1 <= len(pairs) <= MAX_STATS_GOALS:
            raise IntentBusError(f"stats_of needs 1-{MAX_STATS_GOALS} goals, got {len(pairs)}.")
        document: dict[str, object] = {"goals": pairs}
        if wait is not None:
            _check_seconds("wait", wait)
            wait = min(wait, self._settings.max_wait_seconds)
            document["wait"] = wait
        answer = await self._transport.request(
            "POST", "/stats", json=document, retry=True, extra_timeout=wait or 0.0
        )
        return BusStats.from_wire(answer.json())

    # --- what the bus speaks --------------------------------------------

    async def health(self) -> Health:
        """The bus's ``/health``; a v1.1 server has none (404): empty features then."""
        answer = await self._transport.request(
            "GET", "/health", retry=True, accept=frozenset({404})
        )
        header = ProtocolVersion.from_header(answer.headers.get(VERSION_HEADER))
        if answer.status == 404:
            health = Health(protocol=header)
        else:
            health = Health.from_wire(answer.json()).with_protocol(header)
        self._health = health
        return health

    async def protocol_version(self) -> ProtocolVersion:
        """The protocol the bus speaks, asked once and then remembered.

        From ``/health`` (body, then header); a bus that says nothing is taken
        for v1.1, the version with the fewest features, so nothing is assumed.
        """
        health = self._health if self._health is not None else await self.health()
        return health.protocol or self._transport.protocol or ProtocolVersion.V1_1

    async def supports(self, feature: str) -> bool:
        """Whether ``/health`` advertises ``feature`` (``long_poll_claim``, ...)."""
        health = self._health if self._health is not None else await self.health()
        return feature in health.features


# --- argument checks -----------------------------------------------------------


def _item_path(prefix: str, item: str) -> str:
    # Ids and keys are percent-encoded so "/" or "?" in a KV key stay part of it.
    _check_text("id or key", item, limit=1024)
    return prefix + quote(item, safe="")


def _check_goal(goal: object) -> None:
    if not isinstance(goal, str) or not goal.strip():
        raise IntentBusError("goal must be a non-empty string.")
    if len(goal) > MAX_GOAL_CHARS:
        raise IntentBusError(f"goal must be at most {MAX_GOAL_CHARS} characters.")


def _check_namespace(namespace: object) -> None:
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise IntentBusError("namespace must be 1-64 characters of A-Z a-z 0-9 _ . -")


def _check_int(name: str, value: object, *, low: int, high: int) -> None:
    if not is_int(value) or not low <= value <= high:
        raise IntentBusError(f"{name} must be an integer from {low} to {high}.")


def _check_seconds(name: str, value: object) -> None:
    if not is_number(value) or value < 0:
        raise IntentBusError(f"{name} must be a number of seconds >= 0.")


def _worker_headers(
    worker_id: str | None, capabilities: Iterable[str] | str, session: str | None
) -> dict[str, str]:
    """The headers a claim names its worker with (capabilities: a list or a comma string)."""
    headers: dict[str, str] = {}
    if worker_id is not None:
        _check_text("worker_id", worker_id, limit=MAX_WORKER_FIELD_CHARS)
        headers["X-Worker-ID"] = worker_id
    caps = capabilities.split(",") if isinstance(capabilities, str) else capabilities
    cleaned = [c.strip() for c in caps if c.strip()]
    if cleaned:
        headers["X-Worker-Capabilities"] = ",".join(cleaned)
    if session is not None:
        # Extension claim_interrupt: lets interrupt_claims() end this long-poll early.
        _check_text("session", session, limit=MAX_SESSION_CHARS)
        headers["X-Claim-Session"] = session
    return headers


def _check_text(name: str, value: object, *, limit: int) -> None:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise IntentBusError(f"{name} must be a non-empty string of at most {limit} characters.")
