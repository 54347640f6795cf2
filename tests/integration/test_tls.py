"""TLS end to end, with a CA the test issues: the bus serves HTTPS, and the protocol client,
the CLI, the sidecar and the operator's backlog reads verify it against that CA (and refuse a
bus they cannot verify), so a key never crosses a network in clear."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetcluster.pki import CertificateAuthority, Identity
from intent_fleet.operator.backlog import BusBacklog, BusStatsSource
from intent_fleet.operator.egress import GuardedSessions, parse_allow_list
from intent_fleet.operator.errors import BacklogUnavailableError
from intent_fleet.operator.settings import OperatorSettings
from intent_fleet.protocol import (
    AdminClient,
    BusClient,
    ClientSettings,
    IntentBusNetworkError,
    RetryPolicy,
)
from tests.support.busproc import BusProcess, start_bus
from tests.support.sidecar_rig import Procs, until

GOAL = "tls"


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory)
    pair = ca.issue(
        Identity(name="bus", common_name="127.0.0.1", server=True, ip_addresses=("127.0.0.1",))
    )
    return Tls(ca=ca.cert_path, cert=pair.cert, key=pair.key)


@pytest.fixture(scope="module")
def tls_bus(tls: Tls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusProcess]:
    bus = start_bus(
        tmp_path_factory.mktemp("tls-bus"),
        extra_args=["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)],
    )
    yield bus
    assert bus.stop() == 0, bus.logs()


def settings(bus: BusProcess, ca: Path | None) -> ClientSettings:
    return ClientSettings(
        base_url=bus.url, ca_file=str(ca) if ca else None, retry=RetryPolicy(attempts=1)
    )


async def tenant_key(bus: BusProcess, tls: Tls) -> str:
    async with AdminClient(settings=settings(bus, tls.ca), admin_secret=bus.admin_secret) as a:
        created = await a.generate_key("tls-tenant")
    assert created.api_key is not None
    return created.api_key


async def test_the_bus_serves_https_and_clients_verify_it(tls_bus: BusProcess, tls: Tls) -> None:
    assert tls_bus.url.startswith("https://127.0.0.1:")
    key = await tenant_key(tls_bus, tls)
    async with BusClient(settings=settings(tls_bus, tls.ca), api_key=key) as client:
        receipt = await client.publish(GOAL, {"n": 1})
        assert (await client.status(receipt.id)).status == "open"
    # Without the CA the bus cannot be verified: refused, nothing sent.
    async with BusClient(settings=settings(tls_bus, None), api_key=key) as client:
        with pytest.raises(IntentBusNetworkError, match=r"(?i)certificate"):
            await client.publish(GOAL, {"n": 2})
    # Nor does the bus speak plain HTTP on its TLS port.
    plain = ClientSettings(
        base_url=tls_bus.url.replace("https://", "http://"), retry=RetryPolicy(attempts=1)
    )
    async with BusClient(settings=plain, api_key=key) as client:
        with pytest.raises(IntentBusNetworkError):
            await client.publish(GOAL, {"n": 3})


def test_the_cli_verifies_with_intent_ca_file(tls_bus: BusProcess, tls: Tls) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INTENT_")},
        "INTENT_BUS_URL": tls_bus.url,
        "INTENT_API_KEY": tls_bus.admin_secret,
    }
    command = [sys.executable, "-m", "intent_fleet.cli.main", "publish", GOAL, '{"cli": true}']
    ok = subprocess.run(
        command,
        env={**env, "INTENT_CA_FILE": str(tls.ca)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 5, refused.stderr  # bus unreachable
    assert "certificate" in refused.stderr.lower()
    bad = subprocess.run(
        [*command, "--ca-file", str(tls.cert.parent / "nope.pem")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2, bad.stderr
    assert "--ca-file is not a readable PEM CA file" in bad.stderr


async def test_a_sidecar_with_the_ca_file_works_a_tls_bus(
    tls_bus: BusProcess, tls: Tls, tmp_path: Path
) -> None:
    key = await tenant_key(tls_bus, tls)
    procs = Procs(tmp_path)
    try:
        handler = procs.handler()
        procs.sidecar(
            bus_url=tls_bus.url,
            api_key=key,
            goal=GOAL + "-sidecar",
            app_port=handler.port,
            extra_args=["--ca-file", str(tls.ca)],
        )
        async with BusClient(settings=settings(tls_bus, tls.ca), api_key=key) as client:
            receipt = await client.publish(GOAL + "-sidecar", {"status": 200, "json": {"ok": 1}})

            async def done() -> bool | None:
                return (await client.status(receipt.id)).status == "fulfilled" or None

            await until(done, timeout=20, what="the intent fulfilled over TLS")
    finally:
        procs.close()


async def test_the_operators_backlog_reads_verify_with_its_ca_file(
    tls_bus: BusProcess, tls: Tls
) -> None:
    key = await tenant_key(tls_bus, tls)
    policy = parse_allow_list(["127.0.0.1/32"])
    ssl_context = OperatorSettings(bus_ca_file=str(tls.ca)).bus_ssl_context()
    for context, works in ((ssl_context, True), (True, False)):
        sessions = GuardedSessions.open(policy, ssl_context=context)
        try:
            client_settings = ClientSettings(base_url=tls_bus.url, retry=RetryPolicy(attempts=1))
            async with BusClient(
                settings=client_settings, api_key=key, session=sessions.spec
            ) as client:
                source = BusStatsSource(
                    bus=BusBacklog(client=client, bus_url=tls_bus.url),
                    namespace="default",
                    goal=GOAL,
                )
                if works:
                    assert (await source.read()).backlog == 0
                else:
                    with pytest.raises(BacklogUnavailableError, match=r"(?i)certificate"):
                        await source.read()
        finally:
            await sessions.close()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--tls-cert", "x.pem"], 2, "--tls-key goes with a certificate"),
        (["--tls-cert", "missing.pem", "--tls-key", "missing.key"], 1, "cannot load the TLS"),
    ],
)
def test_bad_tls_options_are_refused_clearly(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "intent_fleet.cli.main",
            "bus",
            "--db",
            str(tmp_path / "b.db"),
            "--port",
            "0",
            *args,
        ],
        env={**os.environ, "INTENT_BUS_ADMIN_SECRET": "a" * 32},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["operator", "--bus-ca-file", "/nonexistent/ca.pem"], "--bus-ca-file"),
        (["operator", "--backlog-allow", "bus:8080"], "--backlog-allow"),
        (["operator", "--backlog-allow", "10.0.0.0/8,http://x"], "neither a CIDR nor a host"),
        (["sidecar", "--goal", "g", "--ca-file", "/nonexistent/ca.pem"], "--ca-file is not"),
        (["sidecar", "--goal", "g", "--bus-url", "ftp://bus"], "--bus-url must start with"),
        (["publish", "g", "{}", "--bus-url", "ftp://bus"], "--bus-url must start with"),
        (["operator", "--default-bus-url", "intent-bus:8080"], "--default-bus-url"),
        (["operator", "--default-bus-url", "ftp://intent-bus"], "--default-bus-url"),
    ],
)
def test_bad_ca_and_allow_list_flags_are_usage_errors(
    tmp_path: Path, command: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", *command],
        env={**env, "INTENT_API_KEY": "tk_" + "0" * 40},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert message in done.stderr
