"""Keeping a claimed intent's lease alive while the handler works on it."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from intent_fleet.protocol import Clock, IntentBusError, IntentBusLeaseLostError, RetryPolicy

__all__ = ["Lease", "keep_alive"]

log = logging.getLogger(__name__)

#: Extend when a third of the lease is left, so two extends can fail in a row
#: (a bus restart, a network blip) before the lease runs out.
RENEW_FRACTION = 1 / 3


@dataclass
class Lease:
    """What the sidecar knows of one lease."""

    intent_id: str
    claim_token: str | None
    #: Lease length granted per claim or extend (seconds).
    seconds: int
    #: Unix time the lease ends, as far as the sidecar knows.
    expires_at: float
    lost: bool = False
    extends: int = 0


Extend = Callable[[str, str, int], Awaitable[int]]


async def keep_alive(
    lease: Lease,
    *,
    extend: Extend,
    retry: RetryPolicy,
    rng: random.Random,
    clock: Clock,
) -> None:
    """Extend ``lease`` until cancelled; marks it lost on a 404 and returns.

    Runs only on buses with claim tokens (v2.1); a v1.1 lease cannot be extended.
    """
    if lease.claim_token is None:
        return
    failures = 0
    while True:
        await clock.sleep(
            max(0.5, lease.expires_at - lease.seconds * RENEW_FRACTION - clock.wall())
        )
        try:
            granted = await extend(lease.intent_id, lease.claim_token, lease.seconds)
        except IntentBusLeaseLostError:
            lease.lost = True
            log.warning("lease lost while the handler worked", extra={"intent_id": lease.intent_id})
            return
        except IntentBusError as exc:
            # Keep trying while the lease lasts: the next attempt may reach the bus.
            log.warning(
                "lease extend failed; retrying",
                extra={"intent_id": lease.intent_id, "error": str(exc)},
            )
            if clock.wall() >= lease.expires_at:
                lease.lost = True
                return
            await clock.sleep(retry.delay(failures, rng, retry_after=exc.retry_after))
            failures += 1
            continue
        failures = 0
        # The bus may grant more (or less) than asked: plan from what it granted.
        lease.seconds = granted
        lease.expires_at = clock.wall() + granted
        lease.extends += 1
