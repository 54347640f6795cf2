"""The bus operator's client: tenant keys, dead letters, purge, metrics.

It authenticates with ``X-Admin-Token`` and shares the transport (timeouts,
error translation, retries) with :class:`BusClient`. Only reads are retried:
a repeated ``generate_key`` would mint a second key, a repeated ``retry`` or
``cancel`` could act on an intent that moved on in between.
"""

from __future__ import annotations

from typing import Unpack
from urllib.parse import quote

from .checks import is_int
from .errors import IntentBusError, IntentBusProtocolError
from .limits import MAX_DEAD_PAGE, MAX_OWNER_CHARS
from .models import Ack, DeadLetter, KeyInfo, list_from_wire
from .settings import ClientSettings
from .transport import AdminToken, Connection, ConnectionOptions

__all__ = ["AdminClient"]


class AdminClient(Connection):
    """Admin endpoints of a bus (``/admin/*`` and ``/metrics``)."""

    def __init__(
        self, *, settings: ClientSettings, admin_secret: str, **options: Unpack[ConnectionOptions]
    ) -> None:
        super().__init__(settings=settings, auth=AdminToken(admin_secret), **options)

    async def generate_key(self, owner: str = "anonymous") -> KeyInfo:
        """Mint a tenant key; the answer is the only time its secret is shown."""
        if not owner.strip() or len(owner) > MAX_OWNER_CHARS:
            raise IntentBusError(
                f"owner must be a non-empty string of at most {MAX_OWNER_CHARS} characters."
            )
        answer = await self._transport.request("POST", "/admin/generate_key", json={"owner": owner})
        info = KeyInfo.from_wire(answer.json())
        if info.api_key is None:
            raise IntentBusProtocolError(
                "generate_key answer: required field 'api_key' is missing."
            )
        return info

    async def revoke_key(
        self, *, api_key: str | None = None, key_id: str | None = None
    ) -> str | None:
        """Revoke a key named by its secret or its id (exactly one); returns the key id."""
        if (api_key is None) == (key_id is None):
            raise IntentBusError("revoke_key needs exactly one of api_key or key_id.")
        document = {"api_key": api_key} if api_key is not None else {"id": key_id}
        answer = await self._transport.request("POST", "/admin/revoke_key", json=document)
        return Ack.from_wire(answer.json(allow_empty=True)).id

    async def list_keys(self) -> tuple[KeyInfo, ...]:
        """Every key with owner and dates, never their secrets."""
        answer = await self._transport.request("GET", "/admin/keys", retry=True)
        items = list_from_wire(answer.json(), field="keys", model="keys answer")
        return tuple(KeyInfo.from_wire(item) for item in items)

    async def dead_letters(
        self, namespace: str | None = None, goal: str | None = None, limit: int = 100
    ) -> tuple[DeadLetter, ...]:
        """Intents that ran out of attempts, newest first, at most ``limit`` (1-1000)."""
        if not is_int(limit) or not 1 <= limit <= MAX_DEAD_PAGE:
            raise IntentBusError(f"limit must be an integer from 1 to {MAX_DEAD_PAGE}.")
        answer = await self._transport.request(
            "GET",
            "/admin/dead",
            params={"namespace": namespace, "goal": goal, "limit": limit},
            retry=True,
        )
        items = list_from_wire(answer.json(), field="dead", model="dead letters answer")
        return tuple(DeadLetter.from_wire(item) for item in items)

    async def retry_intent(self, intent_id: str) -> str | None:
        """Put a dead or failed intent back in the queue; returns its new state."""
        answer = await self._transport.request("POST", _intent_path(intent_id, "retry"))
        return Ack.from_wire(answer.json(allow_empty=True)).status

    async def cancel_intent(self, intent_id: str) -> str | None:
        """Cancel an intent that has not finished; returns its new state."""
        answer = await self._transport.request("POST", _intent_path(intent_id, "cancel"))
        return Ack.from_wire(answer.json(allow_empty=True)).status

    async def purge(self, namespace: str | None = None) -> int:
        """Delete every intent (of ``namespace``, if given); returns how many went."""
        document: dict[str, object] = {"confirm": True}
        if namespace is not None:
            document["namespace"] = namespace
        answer = await self._transport.request("POST", "/admin/purge", json=document)
        ack = Ack.from_wire(answer.json())
        if ack.deleted is None:
            raise IntentBusProtocolError("purge answer: required field 'deleted' is missing.")
        return ack.deleted

    async def metrics(self) -> str:
        """The Prometheus exposition text of ``/metrics``."""
        answer = await self._transport.request("GET", "/metrics", retry=True)
        return answer.text()


def _intent_path(intent_id: str, action: str) -> str:
    if not intent_id:
        raise IntentBusError("intent_id must be a non-empty string.")
    return f"/admin/intents/{quote(intent_id, safe='')}/{action}"
