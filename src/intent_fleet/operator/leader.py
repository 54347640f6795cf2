"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Followers poll the Lease; a leader that stops renewing for ``lease_seconds`` is replaced.
Every write carries the Lease's resourceVersion, so two candidates can never both win.
A leader that cannot renew in time steps down (the caller exits, the pod restarts as a
follower) rather than risk two active operators.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import KubeApiError, KubeNotFoundError
from .kube import LEASES, KubeApi
from .settings import LeaderSettings

__all__ = ["LeaderElector"]

log = logging.getLogger("intent_fleet.operator.leader")


def _micro_time(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.timestamp()


@dataclass
class LeaderElector:
    api: KubeApi
    settings: LeaderSettings
    clock: Callable[[], float] = time.time
    _renewed: float = field(default=0.0, init=False)

    async def _get(self) -> Any:
        return await self.api.get(LEASES, self.settings.lease_namespace, self.settings.lease_name)

    async def _put(self, lease: Mapping[str, Any]) -> None:
        s = self.settings
        await self.api.replace(LEASES, s.lease_namespace, s.lease_name, lease)

    def _spec(self, transitions: int, acquired: float | None = None) -> dict[str, Any]:
        now = self.clock()
        spec: dict[str, Any] = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": int(self.settings.lease_seconds),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquired is not None:
            spec["acquireTime"] = _micro_time(acquired)
        return spec

    async def try_acquire(self) -> bool:
        """One attempt: True if this replica holds the Lease afterwards."""
        s = self.settings
        now = self.clock()
        try:
            lease = await self._get()
        except KubeNotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": s.lease_name, "namespace": s.lease_namespace},
                "spec": self._spec(0, now),
            }
            try:
                await self.api.create(LEASES, s.lease_namespace, body)
            except KubeApiError as lost:
                if lost.status == 409:
                    return False
                raise
            self._renewed = now
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = _parse_time(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or s.lease_seconds)
        mine = holder == s.identity
        if not mine and holder and renewed + duration > now:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        lease["spec"] = self._spec(transitions, None if mine else now)
        if mine:
            lease["spec"]["acquireTime"] = spec.get("acquireTime")
        try:
            await self._put(lease)
        except KubeApiError as lost:
            if lost.status == 409:
                return False
            raise
        self._renewed = now
        return True

    async def acquire(self) -> None:
        """Wait until this replica leads."""
        announced = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("leading as %s", self.settings.identity)
                    return
            except KubeApiError as error:
                log.warning("leader election: %s", error)
            if not announced:
                log.info("another replica leads; standing by")
                announced = True
            await asyncio.sleep(self.settings.renew_seconds)

    async def hold(self) -> None:
        """Renew until leadership is lost; returns when it is (the caller must stop acting)."""
        while True:
            await asyncio.sleep(self.settings.renew_seconds)
            try:
                if await self.try_acquire():
                    continue
                log.error("lost the lease to another replica")
                return
            except KubeApiError as error:
                log.warning("could not renew the lease: %s", error)
            if self.clock() - self._renewed > self.settings.lease_seconds:
                log.error(
                    "lease not renewed for %.0f s; stepping down", self.settings.lease_seconds
                )
                return

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown so a follower takes over at once."""
        try:
            lease = await self._get()
            if (lease.get("spec") or {}).get("holderIdentity") != self.settings.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            await self._put(lease)
        except KubeApiError as error:
            log.warning("could not release the lease: %s", error)
