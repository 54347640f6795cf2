"""The controller's backlog reader: an IntentWorker's ``backlogSource`` wired to its
:mod:`~intent_fleet.operator.backlog` source.

The sources themselves never read Kubernetes objects; this module does it for them.

Credentials come from the Secrets the IntentWorker names, through the
:class:`~intent_fleet.operator.credentials.CredentialGate` (opted-in Secrets only, cached
briefly); every request goes through the operator's egress-guarded session; bus clients are
pooled per (URL, key) so a thousand workers on one bus share connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from intent_fleet.protocol import BusClient, ClientSettings

from .backlog import BusStatsSource, MetricQuery, PrometheusSource, ScrapeAuth, SidecarsSource
from .backlog.base import BacklogReading
from .controller import BacklogReader
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
    _clients: dict[tuple[str, str], BusClient] = field(default_factory=dict)

    async def _secret(self, namespace: str, name: str, key: str, what: str) -> str:
        try:
            return await self.gate.secret_value(namespace, name, key)
        except KubeApiError as error:
            # The Kubernetes message names the Secret; never the value.
            raise BacklogUnavailableError(f"{what}: secret {name}: {error}") from error

    def _client(self, url: str, key: str) -> BusClient:
        client = self._clients.get((url, key))
        if client is None:
            settings = ClientSettings(base_url=url, request_timeout=5.0, connect_timeout=2.0)
            client = self._clients[(url, key)] = BusClient(
                settings=settings, api_key=key, session=self.http
            )
        return client

    async def read(self, worker: WorkerSpec) -> BacklogReading:
        kind = worker.source.type
        if kind == "busStats":
            bus = worker.bus
            key = await self._secret(worker.namespace, bus.secret_name, bus.secret_key, kind)
            return await BusStatsSource(
                client=self._client(bus.url, key),
                bus_url=bus.url,
                namespace=bus.namespace or "default",
                goal=worker.goal,
            ).read()
        if kind == "prometheus" and worker.source.prometheus is not None:
            prom = worker.source.prometheus
            auth = ScrapeAuth()
            if prom.auth_secret_name:
                token = await self._secret(worker.namespace, prom.auth_secret_name, "token", kind)
                auth = ScrapeAuth(bearer_token=token)
            return await PrometheusSource(
                session=self.http,
                url=prom.url,
                backlog=MetricQuery(prom.metric, dict(prom.labels)),
                auth=auth,
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


def reader_factory(api: KubeApi, sessions: GuardedSessions, gate: CredentialGate) -> BacklogReader:
    return SourceWiring(api=api, http=sessions.spec, pod_http=sessions.pods, gate=gate).observe
