"""Dashboard sessions: a signed cookie, its CSRF token, and a brake on password guessing.

The cookie carries its own expiry and a random id, signed with a key derived from the
admin secret, so every replica of a bus accepts it without shared state, and changing the
admin secret ends every session. The CSRF token is derived from the cookie: the page
sends it in a header with every request, which a page on another site cannot read or
forge (and ``SameSite=Strict`` keeps the cookie off cross-site requests besides).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass, field

from intent_fleet.protocol import Now

__all__ = ["COOKIE", "CSRF_HEADER", "LoginBrake", "Session", "SessionKeys"]

#: The cookie's name, and the header that carries the CSRF token.
COOKIE = "intent_dashboard"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in dashboard: the cookie's value, its CSRF token, when it ends."""

    cookie: str
    csrf: str
    expires_at: float


class SessionKeys:
    """Makes and checks session cookies for one admin secret."""

    def __init__(self, admin_secret: str, *, lifetime_seconds: float) -> None:
        # Derived, so the cookie's signature says nothing usable about the secret itself.
        self._key = hmac.new(admin_secret.encode(), b"intent-fleet dashboard", "sha256").digest()
        self.lifetime_seconds = lifetime_seconds

    def open(self, now: float) -> Session:
        """A new session from ``now``."""
        expires = math.floor(now + self.lifetime_seconds)
        body = f"{expires}.{secrets.token_urlsafe(18)}"
        cookie = f"{body}.{self._sign('cookie', body)}"
        return Session(cookie=cookie, csrf=self._sign("csrf", cookie), expires_at=float(expires))

    def check(self, cookie: str, now: float) -> Session | None:
        """The session this cookie is, while it lasts; None for anything else."""
        body, _, signature = cookie.rpartition(".")
        expires, _, _ = body.partition(".")
        if not (body and expires.isdigit() and len(cookie) < 200):
            return None
        if not hmac.compare_digest(signature, self._sign("cookie", body)):
            return None
        if int(expires) <= now:
            return None
        return Session(cookie=cookie, csrf=self._sign("csrf", cookie), expires_at=float(expires))

    def _sign(self, purpose: str, text: str) -> str:
        mac = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")


@dataclass
class LoginBrake:
    """Failed logins per client address: ``allowed_failures`` free, then one more each
    ``cooldown_seconds`` (the count drains at that rate), so guessing the secret from one
    address is hopeless and a typo costs nothing."""

    clock: Now
    allowed_failures: int = 5
    cooldown_seconds: float = 10.0
    #: Most addresses remembered; the oldest are forgotten first.
    max_addresses: int = 10_000
    _failures: dict[str, tuple[float, float]] = field(default_factory=dict)

    def wait_for(self, address: str) -> int:
        """Seconds ``address`` must wait before trying again; 0 when it may try now."""
        over = self._count(address) + 1 - self.allowed_failures
        if over <= 0:
            return 0
        return max(1, math.ceil(over * self.cooldown_seconds))

    def failed(self, address: str) -> None:
        count = self._count(address) + 1
        self._failures.pop(address, None)
        if len(self._failures) >= self.max_addresses:
            self._failures.pop(next(iter(self._failures)))
        self._failures[address] = (count, self.clock())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _count(self, address: str) -> float:
        count, since = self._failures.get(address, (0.0, 0.0))
        return max(0.0, count - (self.clock() - since) / self.cooldown_seconds)
