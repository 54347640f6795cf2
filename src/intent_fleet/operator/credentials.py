"""The Secrets and ServiceAccounts an IntentWorker may use: only those that opt in.

The operator may read every Secret its RBAC allows, and it sends the bus key to the URL the
IntentWorker names. Without a gate, whoever may create an IntentWorker, but not read Secrets,
could have any Secret of the namespace sent to a server of theirs (a confused deputy). So by
default the operator uses a Secret, for its own backlog reads or wired into a worker pod, and a
ServiceAccount whose token a worker pod would get, only when the object carries the label
``intentbus.io/credentials: "true"``: whoever labels it may read it, and says so.

``CredentialSettings.require_opt_in = False`` (``--no-credentials-opt-in``) turns the gate off,
as KEDA's ``permissions.operator.restrict.secret: false`` does: then anyone who may create an
IntentWorker in a namespace can use every Secret there.

A missing object and an unlabelled one get the same message, so the condition tells an
IntentWorker's author nothing about Secrets they could not read themselves.

Reads are cached for ``cache_seconds``; when a cached read runs out, the workers that need
it at that moment (a whole fleet polling together) share one new read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .batching import Batcher, settled
from .errors import KubeApiError, KubeNotFoundError, NotPermittedError
from .kube import SECRETS, SERVICE_ACCOUNTS, KubeApi, Resource, secret_value
from .podpolicy import referenced_secrets, token_service_account
from .settings import CredentialSettings
from .spec import WorkerSpec

__all__ = ["OPT_IN_LABEL", "CredentialGate"]

OPT_IN_LABEL: Final = "intentbus.io/credentials"
OPT_IN_VALUE: Final = "true"


def _refusal(kind: str, namespace: str, name: str) -> NotPermittedError:
    return NotPermittedError(
        f"{kind} {name!r} is missing or has not opted in to IntentWorkers; whoever may read it "
        f"can allow it: kubectl label {kind.lower()} {name} -n {namespace} "
        f"{OPT_IN_LABEL}={OPT_IN_VALUE}"
    )


@dataclass
class CredentialGate:
    """Checks opt-ins and reads Secret values, caching what it was allowed to see."""

    api: KubeApi
    settings: CredentialSettings = field(default_factory=CredentialSettings)
    clock: Callable[[], float] = time.monotonic
    _granted: dict[tuple[str, str, str], float] = field(default_factory=dict)
    _secrets: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = field(default_factory=dict)
    #: What each worker uid uses: (spec generation, Secret names, token ServiceAccount).
    _uses: dict[str, tuple[int, tuple[str, ...], str | None]] = field(default_factory=dict)
    _metadata_reads: Batcher[tuple[Resource, str, str], Mapping[str, Any] | None] = field(
        init=False
    )
    _secret_reads: Batcher[tuple[str, str], Mapping[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        # No window: the readers that arrive in the same turn of the event loop share a read.
        self._metadata_reads = Batcher(self._read_metadata, window=0.0)
        self._secret_reads = Batcher(self._read_secrets, window=0.0)

    async def _read_metadata(
        self, keys: Sequence[tuple[Resource, str, str]]
    ) -> dict[tuple[Resource, str, str], Mapping[str, Any] | BaseException | None]:
        got = await asyncio.gather(*(settled(self.api.metadata(r, ns, n)) for r, ns, n in keys))
        return {
            key: (None if isinstance(g, KubeNotFoundError) else g)
            for key, g in zip(keys, got, strict=True)
        }

    async def _read_secrets(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Mapping[str, Any] | BaseException]:
        got = await asyncio.gather(*(settled(self.api.secret(ns, name)) for ns, name in keys))
        return dict(zip(keys, got, strict=True))

    def _fresh(self, at: float) -> bool:
        return self.clock() - at < self.settings.cache_seconds

    def _opted_in(self, meta: Mapping[str, Any]) -> bool:
        if not self.settings.require_opt_in:
            return True
        return (meta.get("labels") or {}).get(OPT_IN_LABEL) == OPT_IN_VALUE

    async def _check(self, resource: Resource, namespace: str, name: str) -> None:
        key = (resource.plural, namespace, name)
        granted = self._granted.get(key)
        if granted is not None and self._fresh(granted):
            return
        try:
            meta = await self._metadata_reads.get((resource, namespace, name))
        except KubeApiError as error:
            if error.status != 403:
                raise
            # The operator's RBAC does not reach it: the same answer as "missing".
            meta = None
        if meta is None or not self._opted_in(meta):
            self._granted.pop(key, None)
            raise _refusal(resource.kind, namespace, name)
        self._granted[key] = self.clock()

    async def check(self, worker: WorkerSpec) -> None:
        """Raise :class:`NotPermittedError` unless every credential the worker uses opted in."""
        secrets, account = self._credentials_of(worker)
        for name in secrets:
            await self._check(SECRETS, worker.namespace, name)
        if account is not None:
            await self._check(SERVICE_ACCOUNTS, worker.namespace, account)

    def _credentials_of(self, worker: WorkerSpec) -> tuple[tuple[str, ...], str | None]:
        """The Secrets and the token's ServiceAccount a worker uses, found once per spec
        generation: walking a pod template on every poll is most of what a poll costs."""
        known = self._uses.get(worker.uid)
        if known is not None and known[0] == worker.generation:
            return known[1], known[2]
        pod = worker.template.get("spec") or {}
        names = {worker.bus.secret_name, *referenced_secrets(pod)}
        if worker.source.prometheus is not None and worker.source.prometheus.auth_secret_name:
            names.add(worker.source.prometheus.auth_secret_name)
        secrets, account = tuple(sorted(names)), token_service_account(pod)
        if worker.uid:
            self._uses[worker.uid] = (worker.generation, secrets, account)
        return secrets, account

    def forget(self, uid: str) -> None:
        self._uses.pop(uid, None)

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The value of ``key`` in an opted-in Secret; :class:`NotPermittedError` otherwise."""
        cached = self._secrets.get((namespace, name))
        if cached is not None and self._fresh(cached[0]):
            secret = cached[1]
        else:
            try:
                secret = await self._secret_reads.get((namespace, name))
            except KubeNotFoundError:
                raise _refusal("Secret", namespace, name) from None
            except KubeApiError as error:
                if error.status != 403:
                    raise
                raise _refusal("Secret", namespace, name) from None
            if not self._opted_in(secret.get("metadata") or {}):
                self._secrets.pop((namespace, name), None)
                raise _refusal("Secret", namespace, name)
            self._secrets[(namespace, name)] = (self.clock(), secret)
        value = secret_value(secret, key)
        if value is None:
            raise NotPermittedError(f"Secret {name!r} has no key {key!r}")
        return value
