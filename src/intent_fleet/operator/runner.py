"""Run the operator: probes, leader election, then kopf with our handlers until stopped.

Only the leader runs kopf. A leader that loses its Lease stops kopf and returns a non-zero
code, so its pod restarts as a follower instead of ever acting beside the new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import kopf
from kopf._core.engines.peering import Identity  # a NewType kopf does not re-export

from .controller import BacklogWiring, Controller
from .credentials import CredentialGate
from .egress import GuardedSessions
from .handlers import build_registry
from .kube import KubeApi, connect
from .leader import LeaderElector
from .metrics import OperatorMetrics
from .probes import ProbeState, start_probes
from .settings import OperatorSettings

__all__ = ["run_operator"]

log = logging.getLogger("intent_fleet.operator")

#: Builds the backlog reader once the API client and an HTTP session exist.
ReaderFactory = Callable[[KubeApi, GuardedSessions, CredentialGate], BacklogWiring]


def _kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    config = kopf.OperatorSettings()
    config.watching.server_timeout = int(settings.watch_server_timeout)
    config.watching.client_timeout = int(settings.watch_client_timeout)
    # Our state lives in our own annotations, not kopf's default ones.
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="intentbus.io")
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="intentbus.io")
    config.persistence.finalizer = "intentbus.io/operator"
    # Warnings and errors about an object become its Events; kopf's routine info lines
    # ("Handler 'reconcile' succeeded.") would be an API write each.
    config.posting.level = logging.WARNING
    # Watching a fixed list of namespaces, the operator holds Roles there and nothing
    # cluster-wide (operator.rbac): no CRD or namespace scanning, the initial discovery only.
    config.scanning.disabled = bool(settings.namespaces)
    return config


class RoutineAtDebug(logging.Filter):
    """kopf's per-object info lines (about 20 for one scale-out) are debug lines here.

    At info the log has one line per scaling decision and per error, which the controller
    writes; kopf's "Handler ... succeeded" and "... is processed" show only at debug.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


#: kopf's logger for everything it says about one object.
KOPF_OBJECTS = logging.getLogger("kopf.objects")


def _post_event(body: object, kind: str, reason: str, message: str) -> None:
    kopf.event(body, type=kind, reason=reason, message=message)  # type: ignore[arg-type]


async def run_operator(
    settings: OperatorSettings, reader_factory: ReaderFactory, stop: asyncio.Event
) -> int:
    routine = RoutineAtDebug()
    KOPF_OBJECTS.addFilter(routine)
    try:
        return await _run(settings, reader_factory, stop)
    finally:
        KOPF_OBJECTS.removeFilter(routine)


async def _run(
    settings: OperatorSettings, reader_factory: ReaderFactory, stop: asyncio.Event
) -> int:
    probes = ProbeState()
    metrics = OperatorMetrics()
    probe_runner = await start_probes(probes, settings.listen, metrics=metrics)
    api = await connect()
    # Every request the operator makes on an IntentWorker's behalf goes through the egress policy.
    sessions = GuardedSessions.open(settings.egress, ssl_context=settings.bus_ssl_context())
    gate = CredentialGate(api, settings.credentials)
    elector = LeaderElector(api, settings.leader) if settings.leader.enabled else None
    backlog = reader_factory(api, sessions, gate)
    try:
        # Every task below belongs to this group, so none outlives it: a renewal can never
        # take the Lease back after release() (below) gave it up, whatever kopf raised.
        async with asyncio.TaskGroup() as tasks:
            stopping = tasks.create_task(stop.wait())
            if elector is not None and not await _stand_by(elector, tasks, stopping, probes):
                return 0
            probes.role = "leader"
            metrics.set_leader(True)
            controller = Controller(
                api=api,
                read_backlog=backlog.observe,
                wake_on_work=backlog.wake_on_work,
                post_event=_post_event,
                check_credentials=gate.check,
                forget_elsewhere=gate.forget,
                render_settings=settings.render,
                status_settings=settings.status,
                http=sessions.pods,
                metrics=metrics,
            )
            return await _lead(
                settings,
                controller,
                elector=elector,
                tasks=tasks,
                stopping=stopping,
                probes=probes,
            )
    finally:
        metrics.set_leader(False)
        if elector is not None and probes.role == "leader":
            await elector.release()
        await backlog.aclose()
        await sessions.close()
        await api.close()
        with contextlib.suppress(Exception):
            await probe_runner.cleanup()


async def _stand_by(
    elector: LeaderElector,
    tasks: asyncio.TaskGroup,
    stopping: asyncio.Task[Any],
    probes: ProbeState,
) -> bool:
    """Wait as a follower: True once this replica leads, False if stopped first."""
    probes.role = "follower"
    acquired = tasks.create_task(elector.acquire())
    await asyncio.wait({acquired, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if acquired.done():
        return True
    acquired.cancel()
    return False


async def _lead(
    settings: OperatorSettings,
    controller: Controller,
    *,
    elector: LeaderElector | None,
    tasks: asyncio.TaskGroup,
    stopping: asyncio.Task[Any],
    probes: ProbeState,
) -> int:
    """Run kopf until stopped (0) or until the Lease is lost (1: the pod restarts as a
    follower instead of ever acting beside the new leader)."""
    kopf_stop = asyncio.Event()
    # Created before kopf starts: kopf cancels the tasks born during its run when it stops
    # (on SIGTERM it handles the signal itself), and a cancelled renewal is not a lost lease.
    renewal = tasks.create_task(elector.hold() if elector else asyncio.Event().wait())

    async def stop_kopf() -> None:
        await asyncio.wait({renewal, stopping}, return_when=asyncio.FIRST_COMPLETED)
        kopf_stop.set()

    guard = tasks.create_task(stop_kopf())
    try:
        await kopf.operator(
            registry=build_registry(),
            settings=_kopf_settings(settings),
            standalone=True,
            # kopf's default identity asks the passwd database for the user, and the image's
            # user (65532) has no entry there: name this replica as the Lease does.
            identity=Identity(settings.leader.identity),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            memo=kopf.Memo(controller=controller),
            stop_flag=kopf_stop,
            ready_flag=probes.ready,
        )
        lost = renewal.done() and not renewal.cancelled() and not stopping.done()
        return 1 if lost else 0
    finally:
        for task in (guard, renewal, stopping):
            task.cancel()
