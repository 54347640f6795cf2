"""Reconcile and autoscale one IntentWorker: the logic the thin kopf handlers call.

Exactly one writer sets the Deployment's replicas: this controller, through server-side apply
under one field manager, serialised per IntentWorker so a spec change and a scaling decision
never race. The scaling state lives in the IntentWorker's status, so a restarted operator picks
up the cooldown and stabilisation window where the last one left them.

Before anything is applied, a worker must pass three gates: its spec parses (names, pod
guardrails), every Secret and ServiceAccount it uses has opted in, and a Deployment of its name
is either absent or its own. A worker that fails one gets ``Ready=False`` with the gate's reason
and one Warning event per distinct refusal, and nothing is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from .backlog.sidecars import FanOutSettings, PodState, poll_sidecars
from .backlog.wakeups import Wake
from .errors import BacklogUnavailableError, InvalidSpecError, KubeNotFoundError, NotOwnedError
from .kube import DEPLOYMENTS, PODS, KubeApi, Resource
from .metrics import OperatorMetrics
from .render import RenderSettings, render_deployment, selector_labels
from .scaling import Decision, Observation, ScalingState, decide
from .spec import API_GROUP, API_VERSION, KIND, WorkerSpec, parse_worker
from .status import (
    BACKLOG_AVAILABLE,
    READY,
    SCALING_ACTIVE,
    SCALING_LIMITED,
    Condition,
    StatusSettings,
    deployment_ready,
    merge_conditions,
    needs_write,
    rfc3339,
)

__all__ = [
    "INTENT_WORKERS",
    "BacklogReader",
    "BacklogWiring",
    "Controller",
    "CredentialCheck",
    "EventSink",
    "Schedule",
]

log = logging.getLogger("intent_fleet.operator")

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: Pods whose sidecar does not answer (or that have no address yet) go first.
UNREACHABLE_COST = -1000

#: Seconds before a refused worker is looked at again (a label may have been added since).
REFUSED_RETRY_SECONDS = 10.0

INTENT_WORKERS = Resource(f"{API_GROUP}/{API_VERSION}", "intentworkers", KIND)

#: Reads the backlog of a worker; raises BacklogUnavailableError when the source fails.
BacklogReader = Callable[[WorkerSpec], Awaitable[Observation]]
#: (worker, wake, armed): armed, wake the worker as soon as its goal gets work; else not.
WakeOnWork = Callable[[WorkerSpec, Wake, bool], Awaitable[None]]


class BacklogWiring(Protocol):
    """The backlog sources as the runner hands them to the controller."""

    async def observe(self, worker: WorkerSpec) -> Observation: ...

    async def wake_on_work(self, worker: WorkerSpec, wake: Wake, armed: bool) -> None: ...

    async def aclose(self) -> None: ...


#: Raises NotPermittedError unless every credential the worker uses has opted in.
CredentialCheck = Callable[[WorkerSpec], Awaitable[None]]
#: Posts a Kubernetes Event about the IntentWorker: (body, type, reason, message).
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


def _selector(worker: WorkerSpec) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(worker).items())


@dataclass(frozen=True, slots=True)
class Schedule:
    """How often a worker polls, and which workers it polls together with."""

    interval: float
    #: Workers reading the same bus with the same key (or the same Prometheus endpoint with
    #: the same credentials) share this name and a phase, so that their reads go out as one
    #: request. None: reads of its own (the sidecars source, or a refused spec).
    group: str | None = None


def _schedule(worker: WorkerSpec) -> Schedule:
    source = worker.source
    if source.type == "busStats":
        bus = worker.bus
        group = f"{bus.url} {worker.namespace}/{bus.secret_name}/{bus.secret_key}"
    elif source.type == "prometheus" and source.prometheus is not None:
        prom = source.prometheus
        group = f"{prom.url} {worker.namespace}/{prom.auth_secret_name}"
    else:
        return Schedule(worker.polling_interval_seconds)
    return Schedule(worker.polling_interval_seconds, group)


def _slim(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What a poll reads of a Deployment (ownership, replicas, rollout state): a thousand
    full Deployments, pod template and all, would be most of the operator's memory."""
    meta = deployment.get("metadata") or {}
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "generation", "resourceVersion", "ownerReferences")
            if k in meta
        },
        "spec": {"replicas": (deployment.get("spec") or {}).get("replicas")},
        "status": deployment.get("status") or {},
    }


def _version(obj: Mapping[str, Any]) -> int:
    """The resourceVersion as a number (etcd's revision); 0 when it is not one."""
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(version) if version.isdigit() else 0


def _check_owned(worker: WorkerSpec, deployment: Mapping[str, Any] | None) -> None:
    """A Deployment of the worker's name that this IntentWorker does not control is not ours."""
    if deployment is None:
        return
    owners = (deployment.get("metadata") or {}).get("ownerReferences") or []
    if not any(o.get("uid") == worker.uid and o.get("controller") is True for o in owners):
        raise NotOwnedError(
            f"a Deployment named {worker.name!r} exists and is not controlled by this "
            "IntentWorker; it is left alone: delete or rename that Deployment, or give the "
            "IntentWorker another name"
        )


@dataclass
class Controller:
    api: KubeApi
    read_backlog: BacklogReader
    post_event: EventSink
    check_credentials: CredentialCheck
    #: Wakes a worker at zero when its goal gets work, where the source can (busStats).
    wake_on_work: WakeOnWork | None = None
    #: Told the uid of every worker that is gone, to drop what it keeps of it.
    forget_elsewhere: Callable[[str], None] | None = None
    render_settings: RenderSettings = field(default_factory=RenderSettings)
    status_settings: StatusSettings = field(default_factory=StatusSettings)
    clock: Callable[[], float] = time.time
    http: aiohttp.ClientSession | None = None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _states: dict[str, ScalingState] = field(default_factory=dict)
    #: metadata.generation of each worker Deployment as our last apply left it.
    _generations: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The refusal last reported per worker uid, so concurrent passes report it once.
    _refusals: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The parsed spec of each worker uid, at the generation it was parsed for.
    _parsed: dict[str, WorkerSpec] = field(default_factory=dict)
    #: Worker Deployments as the watch (or our last apply) last showed them, by namespace
    #: and name: a poll reads its replicas here instead of asking the API server.
    _deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def _lock(self, worker: WorkerSpec) -> asyncio.Lock:
        return self._locks.setdefault(worker.uid, asyncio.Lock())

    def _parse(self, body: Mapping[str, Any]) -> WorkerSpec:
        """The worker's spec, parsed once per generation (every spec change makes a new one;
        name, namespace and uid never change): a poll would otherwise parse it every time."""
        meta = body.get("metadata") or {}
        uid, generation = str(meta.get("uid") or ""), meta.get("generation")
        known = self._parsed.get(uid)
        if known is not None and known.generation == generation:
            return known
        worker = parse_worker(body, default_bus_url=self.render_settings.default_bus_url)
        if uid:
            self._parsed[uid] = worker
        return worker

    def forget(self, uid: str) -> None:
        if self.forget_elsewhere is not None:
            self.forget_elsewhere(uid)
        self._parsed.pop(uid, None)
        self._locks.pop(uid, None)
        self._states.pop(uid, None)
        self._refusals.pop(uid, None)
        self.metrics.forget(uid)

    def seen_deployment(self, event: str | None, deployment: dict[str, Any]) -> None:
        """A worker Deployment as the watch delivered it (``event`` ``DELETED`` or another)."""
        meta = deployment.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event == "DELETED":
            self._deployments.pop(key, None)
        else:
            self._remember(key, deployment)

    def _remember(self, key: tuple[str, str], deployment: dict[str, Any]) -> None:
        # Our apply's answer can be newer than a watch event still on its way: keep the newer.
        known = self._deployments.get(key)
        if known is None or _version(deployment) >= _version(known):
            self._deployments[key] = _slim(deployment)

    async def _deployment(self, worker: WorkerSpec) -> dict[str, Any] | None:
        key = (worker.namespace, worker.name)
        found = self._deployments.get(key)
        if found is None:
            # Not seen by the watch (yet): ask once; an absent one is created by the caller.
            try:
                found = await self.api.get(DEPLOYMENTS, worker.namespace, worker.name)
            except KubeNotFoundError:
                return None
            self._remember(key, found)
        _check_owned(worker, found)
        return found

    async def _apply(self, worker: WorkerSpec, replicas: int) -> dict[str, Any]:
        applied: dict[str, Any] = await self.api.apply(
            render_deployment(worker, replicas, self.render_settings)
        )
        generation = int(applied.get("metadata", {}).get("generation") or 0)
        self._generations[(worker.namespace, worker.name)] = generation
        self._remember((worker.namespace, worker.name), applied)
        return applied

    def drifted(self, deployment: Mapping[str, Any]) -> bool:
        """True when a Deployment's spec moved past what our last apply produced."""
        meta = deployment.get("metadata") or {}
        known = self._generations.get((str(meta.get("namespace")), str(meta.get("name"))))
        return known is not None and int(meta.get("generation") or 0) > known

    def _state(self, worker: WorkerSpec, body: Mapping[str, Any]) -> ScalingState:
        known = self._states.get(worker.uid)
        if known is not None:
            return known
        saved = (body.get("status") or {}).get("scaling")
        if isinstance(saved, Mapping):
            try:
                loaded = ScalingState.from_dict(saved)
                return loaded.later_by(self.status_settings.refresh_seconds)
            except InvalidSpecError as corrupt:
                log.warning("ignoring saved scaling state of %s: %s", worker.name, corrupt)
        return ScalingState()

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """Apply the Deployment for the current spec, keeping the replicas already decided."""
        try:
            with self.metrics.reconciling():
                await self._reconcile(body)
        except InvalidSpecError as refused:
            await self._refuse(body, refused)
        else:
            self._refusals.pop(str((body.get("metadata") or {}).get("uid")), None)

    async def _reconcile(self, body: Mapping[str, Any]) -> None:
        worker = self._parse(body)
        async with self._lock(worker):
            current = await self._deployment(worker)
            await self.check_credentials(worker)
            if worker.manual_replicas is not None:
                replicas = worker.manual_replicas
            elif current is not None:
                replicas = int(current.get("spec", {}).get("replicas") or 0)
            else:
                replicas = worker.policy.min_replicas
            if worker.manual_replicas is None:
                replicas = min(
                    max(replicas, worker.policy.min_replicas), worker.policy.max_replicas
                )
            applied = await self._apply(worker, replicas)
            await self._patch_status(worker, body, applied, extra={})

    def schedule(self, body: Mapping[str, Any]) -> Schedule:
        """When this worker polls (see :class:`Schedule`), before its first poll."""
        try:
            worker = self._parse(body)
        except InvalidSpecError:
            return Schedule(REFUSED_RETRY_SECONDS)
        return _schedule(worker)

    async def tick(self, body: Mapping[str, Any], wake: Wake | None = None) -> Schedule:
        """One autoscaling step; returns when the next is due. ``wake`` wakes this worker's
        poll out of turn: called when its goal gets work while it is at zero."""
        try:
            with self.metrics.reconciling():
                worker = self._parse(body)
                async with self._lock(worker):
                    at_zero = await self._tick(worker, body)
                if wake is not None:
                    await self._wake_on_work(worker, wake, armed=at_zero)
        except InvalidSpecError as refused:
            await self._refuse(body, refused)
            return Schedule(REFUSED_RETRY_SECONDS)
        self._refusals.pop(worker.uid, None)
        return _schedule(worker)

    async def _refuse(self, body: Mapping[str, Any], refused: InvalidSpecError) -> None:
        """Report a refusal once: ``Ready=False`` with its reason, one Warning event, one log."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        message = str(refused)
        status = body.get("status") or {}
        conditions_now = status.get("conditions") or ()
        ready: Mapping[str, Any] = next((c for c in conditions_now if c.get("type") == READY), {})
        refusal = (refused.reason, message)
        uid = str(meta.get("uid"))
        if self._refusals.get(uid) == refusal or (ready.get("reason"), ready.get("message")) == (
            refusal
        ):
            return
        self._refusals[uid] = refusal
        log.warning("%s/%s refused (%s): %s", namespace, name, refused.reason, message)
        self.post_event(body, "Warning", refused.reason, message)
        generation = int(meta.get("generation") or 0)
        conditions = merge_conditions(
            status.get("conditions"),
            [Condition(READY, False, refused.reason, message)],
            generation,
            self.clock(),
        )
        patch = {"status": {"observedGeneration": generation, "conditions": conditions}}
        with contextlib.suppress(KubeNotFoundError):
            await self.api.merge_patch(INTENT_WORKERS, namespace, name, patch, subresource="status")

    async def stop_waking(self, body: Mapping[str, Any], wake: Wake) -> None:
        """This worker's polls have ended (deleted, or the operator stops): no more wake-ups."""
        with contextlib.suppress(InvalidSpecError):
            worker = self._parse(body)
            await self._wake_on_work(worker, wake, armed=False)

    async def _wake_on_work(self, worker: WorkerSpec, wake: Wake, *, armed: bool) -> None:
        if self.wake_on_work is None:
            return
        try:
            await self.wake_on_work(worker, wake, armed)
        except BacklogUnavailableError as failed:
            # Only a quicker start is lost: the next poll sees the work all the same.
            log.debug("%s/%s: no wake-up on work: %s", worker.namespace, worker.name, failed)

    async def _tick(self, worker: WorkerSpec, body: Mapping[str, Any]) -> bool:
        """One poll; True when the worker is at zero with nothing queued (worth a wake-up)."""
        now = self.clock()
        current_deployment = await self._deployment(worker)
        await self.check_credentials(worker)
        current = (
            worker.policy.min_replicas
            if current_deployment is None
            else int(current_deployment.get("spec", {}).get("replicas") or 0)
        )
        if worker.manual_replicas is not None or worker.paused:
            await self._hold(worker, body, current, current_deployment)
            return False

        state = self._state(worker, body)
        observation, available, extra = await self._observe(worker, now)
        conditions = [available]
        decision = decide(
            worker.policy,
            current_replicas=current,
            observation=observation,
            state=state,
            now=now,
        )
        self._states[worker.uid] = decision.state
        conditions += self._scaling_conditions(decision)
        extra["desiredReplicas"] = decision.replicas
        extra["scaling"] = decision.state.to_dict()
        if decision.state.last_work_seen is not None:
            extra["lastActiveTime"] = rfc3339(decision.state.last_work_seen)
        if decision.replicas != current or current_deployment is None:
            if decision.replicas < current:
                await self._mark_idle_pods(worker)
            current_deployment = await self._apply(worker, decision.replicas)
            extra["lastScaleTime"] = rfc3339(now)
            if decision.replicas != current:
                self.metrics.scaled(worker, current, decision.replicas, reason=decision.reason)
                # The one line per scaling decision at info ("backlog 15 ... wants 2: 0 -> 2").
                log.info("%s/%s: %s", worker.namespace, worker.name, decision.reason)
                self.post_event(
                    body,
                    "Normal",
                    "Scaled",
                    f"{current} -> {decision.replicas} replicas: {decision.reason}",
                )
        await self._patch_status(worker, body, current_deployment, extra, conditions)
        return decision.replicas == 0 and observation.work == 0

    async def _hold(
        self,
        worker: WorkerSpec,
        body: Mapping[str, Any],
        current: int,
        current_deployment: dict[str, Any] | None,
    ) -> None:
        """Manual or paused: keep the replicas asked for (or those there are), no autoscaling."""
        target = worker.manual_replicas if worker.manual_replicas is not None else current
        reason = "ManualReplicas" if worker.manual_replicas is not None else "Paused"
        conditions = [
            Condition(SCALING_ACTIVE, False, reason, "autoscaling is off for this worker"),
            Condition(SCALING_LIMITED, False, reason, "autoscaling is off"),
        ]
        if target != current or current_deployment is None:
            current_deployment = await self._apply(worker, target)
        extra = {"desiredReplicas": target, "backlog": None}  # not read while autoscaling is off
        await self._patch_status(worker, body, current_deployment, extra, conditions)

    async def _observe(
        self, worker: WorkerSpec, now: float
    ) -> tuple[Observation, Condition, dict[str, Any]]:
        """Read the backlog once, timed: the observation, BacklogAvailable and status fields.

        A failed source yields an unknown backlog (the scaler then holds replicas).
        """
        started = time.monotonic()
        try:
            observation = await self.read_backlog(worker)
        except BacklogUnavailableError as failed:
            observation = Observation(backlog=None)
            available = Condition(BACKLOG_AVAILABLE, False, "SourceFailed", str(failed))
            extra: dict[str, Any] = {"backlog": None}  # unknown, not what it last was
        else:
            answered = f"{worker.source.type} answered"
            available = Condition(BACKLOG_AVAILABLE, True, "SourceRead", answered)
            extra = {"backlog": observation.backlog, "backlogObservedTime": rfc3339(now)}
        seconds = time.monotonic() - started
        extra["backlogReadSeconds"] = round(seconds, 4)
        self.metrics.backlog_read(worker, seconds=seconds, observation=observation)
        return observation, available, extra

    @staticmethod
    def _scaling_conditions(decision: Decision) -> list[Condition]:
        if decision.held:
            active = Condition(SCALING_ACTIVE, False, "SourceFailed", decision.reason)
        elif decision.active:
            active = Condition(SCALING_ACTIVE, True, "WorkPresent", decision.reason)
        else:
            active = Condition(SCALING_ACTIVE, True, "Idle", decision.reason)
        if decision.limited_reason is not None:
            limited = Condition(
                SCALING_LIMITED, True, str(decision.limited_reason), decision.reason
            )
        else:
            limited = Condition(SCALING_LIMITED, False, "DesiredWithinRange", decision.reason)
        return [active, limited]

    async def _mark_idle_pods(self, worker: WorkerSpec) -> None:
        """Before a scale-in, make the ReplicaSet delete idle pods first.

        A pod's deletion cost is the work it has in flight (read from its sidecar's
        ``/v1/state``); pods that do not answer cost the least, being of no use anyway.
        """
        if self.http is None:
            return
        pods = await self.api.list(PODS, worker.namespace, _selector(worker))
        port = self.render_settings.ops_port
        addressed = [p for p in pods if (p.get("status") or {}).get("podIP")]
        urls = [f"http://{p['status']['podIP']}:{port}" for p in addressed]
        answers = await poll_sidecars(self.http, urls, settings=FanOutSettings())
        costs = {
            p["metadata"]["name"]: a.in_flight if isinstance(a, PodState) else UNREACHABLE_COST
            for p, a in zip(addressed, answers, strict=True)
        }

        async def mark(pod: Mapping[str, Any]) -> None:
            name = pod["metadata"]["name"]
            cost = costs.get(name, UNREACHABLE_COST)
            with contextlib.suppress(KubeNotFoundError):
                await self.api.merge_patch(
                    PODS,
                    worker.namespace,
                    name,
                    {"metadata": {"annotations": {DELETION_COST: str(cost)}}},
                )

        await asyncio.gather(*(mark(p) for p in pods))

    async def _patch_status(
        self,
        worker: WorkerSpec,
        body: Mapping[str, Any],
        deployment: Mapping[str, Any] | None,
        extra: Mapping[str, Any],
        conditions: list[Condition] | None = None,
    ) -> None:
        status = body.get("status") or {}
        dep_status = (deployment or {}).get("status") or {}
        replicas = int(dep_status.get("replicas") or 0)
        ready = int(dep_status.get("readyReplicas") or 0)
        updates = [deployment_ready(deployment, True), *(conditions or [])]
        # The whole status as it should be: what this pass knows over what is there, so that
        # what it did not look at (the last scale time, say) stays as it is.
        new = {
            **status,
            "observedGeneration": worker.generation,
            "selector": _selector(worker),
            "replicas": replicas,
            "readyReplicas": ready,
            **extra,
            "conditions": merge_conditions(
                status.get("conditions"), updates, worker.generation, self.clock()
            ),
        }
        desired = extra.get("desiredReplicas")
        self.metrics.worker_status(
            worker, replicas=replicas, ready=ready, desired=desired, conditions=new["conditions"]
        )
        # ``body`` is kopf's live view of the IntentWorker: our last write is in it by the next
        # poll, and so is anyone else's.
        if not needs_write(status, new, refresh_seconds=self.status_settings.refresh_seconds):
            return
        try:
            await self.api.merge_patch(
                INTENT_WORKERS,
                worker.namespace,
                worker.name,
                {"status": new},
                subresource="status",
            )
        except KubeNotFoundError:
            log.info("intentworker %s/%s is gone", worker.namespace, worker.name)
            # A pass that raced the deletion must not leave (or bring back) its series.
            self.forget(worker.uid)
