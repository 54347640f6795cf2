"""The controller's backlog reader: an IntentWorker's ``backlogSource`` wired to its
:mod:`~intent_fleet.operator.backlog` source.

The sources themselves never read Kubernetes objects; this module does it for them.

Credentials come from the Secrets the IntentWorker names, through the
:class:`~intent_fleet.operator.credentials.CredentialGate` (opted-in Secrets only, cached
briefly); every request goes through the operator's egress-guarded session. Bus clients are
pooled per (URL, key), and so are their :class:`~.backlog.BusBacklog` readers: a thousand
workers on one bus share its connections and, polling at the same phase, one ``/stats``
request per poll. Prometheus endpoints are pooled per (URL, credentials) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from intent_fleet.protocol import BusClient, ClientSettings

from .backlog import (
    BusBacklog,
    BusStatsSource,
    MetricQuery,
    PrometheusSource,
    Scrape,
    ScrapeAuth,
    SidecarsSource,
    Wake,
)
from .backlog.base import BacklogReading
from .credentials import CredentialGate
from .egress import GuardedSessions
from .errors import BacklogUnavailableError, KubeApiError
from .kube import PODS, KubeApi
from .render import RenderSettings, selector_labels
from .scaling import Observation
from .spec import WorkerSpec

__all__ = ["SourceWiring", "reader_factory"]


@dataclass
class SourceWiring:
    api: KubeApi
    #: For the URLs the spec names.
    http: aiohttp.ClientSession
    #: For worker pods' ops listeners.
    pod_http: aiohttp.ClientSession
    gate: CredentialGate
    ops_port: int = RenderSettings().ops_port
    _buses: dict[tuple[str, str], BusBacklog] = field(default_factory=dict)
    _scrapes: dict[tuple[str, ScrapeAuth], Scrape] = field(default_factory=dict)

    async def _secret(self, namespace: str, name: str, key: str, what: str) -> str:
        try:
            return await self.gate.secret_value(namespace, name, key)
        except KubeApiError as error:
            # The Kubernetes message names the Secret; never the value.
            raise BacklogUnavailableError(f"{what}: secret {name}: {error}") from error

    def _bus(self, url: str, key: str) -> BusBacklog:
        bus = self._buses.get((url, key))
        if bus is None:
            settings = ClientSettings(base_url=url, request_timeout=5.0, connect_timeout=2.0)
            client = BusClient(settings=settings, api_key=key, session=self.http)
            bus = self._buses[(url, key)] = BusBacklog(client=client, bus_url=url)
        return bus

    def _scrape(self, url: str, auth: ScrapeAuth) -> Scrape:
        scrape = self._scrapes.get((url, auth))
        if scrape is None:
            scrape = self._scrapes[(url, auth)] = Scrape(session=self.http, url=url, auth=auth)
        return scrape

    async def read(self, worker: WorkerSpec) -> BacklogReading:
        kind = worker.source.type
        if kind == "busStats":
            bus = worker.bus
            key = await self._secret(worker.namespace, bus.secret_name, bus.secret_key, kind)
            return await BusStatsSource(
                bus=self._bus(bus.url, key), namespace=bus.namespace or "default", goal=worker.goal
            ).read()
        if kind == "prometheus" and worker.source.prometheus is not None:
            prom = worker.source.prometheus
            auth = ScrapeAuth()
            if prom.auth_secret_name:
                token = await self._secret(worker.namespace, prom.auth_secret_name, "token", kind)
                auth = ScrapeAuth(bearer_token=token)
            return await PrometheusSource(
                scrape=self._scrape(prom.url, auth),
                backlog=MetricQuery(prom.metric, dict(prom.labels)),
            ).read()
        if kind == "sidecars":
            selector = ",".join(f"{k}={v}" for k, v in selector_labels(worker).items())
            pods = await self.api.list(PODS, worker.namespace, selector)
            urls = [
                f"http://{p['status']['podIP']}:{self.ops_port}"
                for p in pods
                if (p.get("status") or {}).get("podIP")
            ]
            return await SidecarsSource(
                session=self.pod_http,
                pod_urls=urls,
                fallback_concurrency=worker.handler.concurrency,
            ).read()
        raise BacklogUnavailableError(f"unknown backlog source {kind!r}")

    async def observe(self, worker: WorkerSpec) -> Observation:
        return (await self.read(worker)).observation()

    async def wake_on_work(self, worker: WorkerSpec, wake: Wake, armed: bool) -> None:
        """Armed: wake this worker (at zero, nothing queued) as soon as its goal gets work;
        disarmed otherwise. Only a busStats source's bus can say so; others poll."""
        if worker.source.type != "busStats":
            return
        bus = worker.bus
        key = await self._secret(worker.namespace, bus.secret_name, bus.secret_key, "busStats")
        wakeups = self._bus(bus.url, key).wakeups
        namespace = bus.namespace or "default"
        if armed:
            wakeups.watch(namespace, worker.goal, wake)
        else:
            wakeups.unwatch(namespace, worker.goal, wake)

    async def aclose(self) -> None:
        for bus in self._buses.values():
            await bus.aclose()
        for scrape in self._scrapes.values():
            await scrape.aclose()


def reader_factory(api: KubeApi, sessions: GuardedSessions, gate: CredentialGate) -> SourceWiring:
    return SourceWiring(api=api, http=sessions.spec, pod_http=sessions.pods, gate=gate)
