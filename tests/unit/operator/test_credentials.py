"""The credentials gate: only opted-in Secrets and ServiceAccounts, and no existence oracle."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import pytest

from intent_fleet.operator.credentials import OPT_IN_LABEL, CredentialGate
from intent_fleet.operator.errors import KubeApiError, KubeNotFoundError, NotPermittedError
from intent_fleet.operator.kube import Resource
from intent_fleet.operator.settings import CredentialSettings
from intent_fleet.operator.spec import parse_worker
from tests.unit.operator.test_render import worker_body

OPTED_IN = {OPT_IN_LABEL: "true"}


class FakeApi:
    """Objects by (plural, namespace, name); counts reads of each kind."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.forbidden: set[str] = set()
        self.metadata_reads = 0
        self.secret_reads = 0

    def add(self, plural: str, name: str, labels: Mapping[str, str], **data: str) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.objects[(plural, "media", name)] = {
            "metadata": {"name": name, "namespace": "media", "labels": dict(labels)},
            "data": encoded,
        }

    def _find(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if name in self.forbidden:
            raise KubeApiError("forbidden", 403)
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise KubeNotFoundError("not found", 404)
        return found

    async def metadata(self, resource: Resource, namespace: str, name: str) -> Mapping[str, Any]:
        self.metadata_reads += 1
        meta: Mapping[str, Any] = self._find(resource.plural, namespace, name)["metadata"]
        return meta

    async def secret(self, namespace: str, name: str) -> Mapping[str, Any]:
        self.secret_reads += 1
        return self._find("secrets", namespace, name)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(api: FakeApi, clock: Clock | None = None, **settings: Any) -> CredentialGate:
    return CredentialGate(
        api,  # type: ignore[arg-type]
        CredentialSettings(**settings),
        clock=clock or Clock(),
    )


async def test_an_opted_in_key_is_read_and_cached() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", OPTED_IN, **{"api-key": "k-123\n"})
    clock = Clock()
    g = gate(api, clock)
    await g.check(parse_worker(worker_body()))
    assert await g.secret_value("media", "bus-key", "api-key") == "k-123"
    await g.check(parse_worker(worker_body()))
    assert await g.secret_value("media", "bus-key", "api-key") == "k-123"
    assert (api.metadata_reads, api.secret_reads) == (1, 1)
    clock.now += 61  # a rotation or a removed label shows within the cache time
    api.add("secrets", "bus-key", {}, **{"api-key": "k-456"})
    with pytest.raises(NotPermittedError):
        await g.secret_value("media", "bus-key", "api-key")
    with pytest.raises(NotPermittedError):
        await g.check(parse_worker(worker_body()))


async def test_missing_unlabelled_and_unreadable_look_the_same() -> None:
    api = FakeApi()
    api.add("secrets", "db-password", {}, password="hunter2")
    api.add("secrets", "wrong-label", {OPT_IN_LABEL: "yes"}, password="hunter2")
    api.forbidden.add("beyond-rbac")
    messages = []
    for name in ("db-password", "no-such-secret", "beyond-rbac", "wrong-label"):
        body = worker_body(bus={"url": "http://bus:8080", "credentialsSecretRef": {"name": name}})
        with pytest.raises(NotPermittedError) as refused:
            await gate(api).check(parse_worker(body))
        messages.append(str(refused.value).replace(name, "NAME"))
        with pytest.raises(NotPermittedError):
            await gate(api).secret_value("media", name, "password")
    assert len(set(messages)) == 1, messages
    assert "kubectl label secret NAME -n media intentbus.io/credentials=true" in messages[0], (
        messages[0]
    )
    assert "hunter2" not in "".join(messages)


async def test_refusals_are_not_cached_so_a_new_label_counts_at_once() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", {})
    g = gate(api)
    with pytest.raises(NotPermittedError):
        await g.check(parse_worker(worker_body()))
    api.add("secrets", "bus-key", OPTED_IN)
    await g.check(parse_worker(worker_body()))


async def test_every_secret_of_the_template_and_the_token_account_must_opt_in() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", OPTED_IN)
    api.add("secrets", "db", {})
    body = worker_body()
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": "db"}}]
    with pytest.raises(NotPermittedError, match="Secret 'db'"):
        await gate(api).check(parse_worker(body))
    api.add("secrets", "db", OPTED_IN)
    await gate(api).check(parse_worker(body))

    pod["serviceAccountName"] = "deployer"
    await gate(api).check(parse_worker(body))  # no token asked for: nothing to check
    pod["automountServiceAccountToken"] = True
    with pytest.raises(NotPermittedError, match="kubectl label serviceaccount deployer"):
        await gate(api).check(parse_worker(body))
    api.add("serviceaccounts", "deployer", OPTED_IN)
    await gate(api).check(parse_worker(body))


async def test_the_prometheus_token_secret_must_opt_in_too() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", OPTED_IN)
    prom = {"url": "http://p:9090/metrics", "metric": "m", "authSecretRef": {"name": "scrape"}}
    body = worker_body(backlogSource={"type": "prometheus", "prometheus": prom})
    with pytest.raises(NotPermittedError, match="Secret 'scrape'"):
        await gate(api).check(parse_worker(body))


async def test_the_gate_can_be_turned_off_and_then_reads_any_secret() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", {}, **{"api-key": "k"})
    g = gate(api, require_opt_in=False)
    await g.check(parse_worker(worker_body()))
    assert await g.secret_value("media", "bus-key", "api-key") == "k"
    with pytest.raises(NotPermittedError):  # still nothing for a Secret that is not there
        await g.secret_value("media", "gone", "api-key")


async def test_a_missing_key_in_an_opted_in_secret_is_named() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", OPTED_IN, other="x")
    with pytest.raises(NotPermittedError, match="has no key 'api-key'"):
        await gate(api).secret_value("media", "bus-key", "api-key")


async def test_other_api_errors_are_not_disguised() -> None:
    api = FakeApi()

    async def broken(*_: Any) -> Mapping[str, Any]:
        raise KubeApiError("etcd timeout", 500)

    api.metadata = broken  # type: ignore[method-assign]
    with pytest.raises(KubeApiError):
        await gate(api).check(parse_worker(worker_body()))


async def test_a_fleet_whose_cached_secret_ran_out_reads_it_once() -> None:
    api = FakeApi()
    api.add("secrets", "bus-key", OPTED_IN, **{"api-key": "k"})
    clock = Clock()
    gate = CredentialGate(api, CredentialSettings(cache_seconds=60), clock=clock)  # type: ignore[arg-type]
    assert await gate.secret_value("media", "bus-key", "api-key") == "k"
    clock.now += 61
    got = await asyncio.gather(
        *(gate.secret_value("media", "bus-key", "api-key") for _ in range(50))
    )
    assert got == ["k"] * 50
    assert api.secret_reads == 2  # the first, and one for the fifty


async def test_no_task_it_starts_ends_with_an_exception() -> None:
    """kopf raises again, when it stops, the exception of any task born while it ran: a
    missing Secret must reach its reader as a refusal, not leave a failed task behind."""
    loop = asyncio.get_running_loop()
    born: list[asyncio.Future[Any]] = []
    factory = loop.get_task_factory()

    def recording(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        born.append(task)
        return task

    loop.set_task_factory(recording)  # type: ignore[arg-type]
    try:
        gate = CredentialGate(FakeApi())  # type: ignore[arg-type]
        with pytest.raises(NotPermittedError):
            await gate.secret_value("media", "missing", "api-key")
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        loop.set_task_factory(factory)
    assert born, "the gate started no task: the test tested nothing"
    failed = [t for t in born if t.done() and not t.cancelled() and t.exception() is not None]
    assert failed == []
