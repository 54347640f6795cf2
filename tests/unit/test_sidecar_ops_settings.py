"""The ops listener's settings: ``--ops-listen`` / ``--drain-token`` and their environment
variables, read into :class:`OpsSettings` with every problem reported together."""

from __future__ import annotations

import os

import pytest

from intent_fleet.cli.errors import UsageError
from intent_fleet.cli.flags import resolve
from intent_fleet.cli.main import build_parser
from intent_fleet.cli.sidecar_command import parse_listen, settings_from_args
from intent_fleet.sidecar import DRAIN_HEADER, OpsSettings, SidecarSettings
from intent_fleet.sidecar.local_api import LOCAL_ROUTES, OPS_ROUTES

TOKEN = "a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flags fall back to the INTENT_* variables of this process.
    for name in [n for n in os.environ if n.startswith("INTENT_")]:
        monkeypatch.delenv(name)


def _settings(*argv: str) -> SidecarSettings:
    args = build_parser().parse_args(["sidecar", "--goal", "g", *argv])
    resolve(args, os.environ)
    return settings_from_args(args)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::]:9090", ("::", 9090)),
        ("[fe80::1]:80", ("fe80::1", 80)),
    ],
)
def test_parse_listen_reads_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("9090", "HOST:PORT"),
        (":9090", "HOST:PORT"),
        ("[]:9090", "HOST:PORT"),
        ("0.0.0.0:", "port"),
        ("0.0.0.0:0", "port"),
        ("0.0.0.0:65536", "port"),
        ("0.0.0.0:http", "port"),
        ("0.0.0.0:-1", "port"),
        (":::9090", "brackets"),
    ],
)
def test_parse_listen_says_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_listen(value)


def test_ops_listener_is_off_unless_asked() -> None:
    ops = _settings().ops
    assert ops == OpsSettings()
    assert not ops.enabled
    assert ops.drain_token == ""


def test_flags_fill_the_ops_settings() -> None:
    ops = _settings("--ops-listen", "0.0.0.0:9090", "--drain-token", f"  {TOKEN}\n").ops
    assert (ops.enabled, ops.host, ops.port) == (True, "0.0.0.0", 9090)
    assert ops.drain_token == TOKEN  # surrounding whitespace (a file's newline) is dropped


def test_environment_fills_the_ops_settings_as_the_operator_renders_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INTENT_OPS_LISTEN", "0.0.0.0:9090")
    monkeypatch.setenv("INTENT_DRAIN_TOKEN", TOKEN)
    ops = _settings().ops
    assert (ops.host, ops.port, ops.drain_token) == ("0.0.0.0", 9090, TOKEN)


def test_an_ops_listener_without_a_token_is_allowed_and_refuses_drain() -> None:
    ops = _settings("--ops-listen", "0.0.0.0:9090").ops
    assert ops.enabled and ops.drain_token == ""


def test_every_settings_problem_is_reported_at_once_and_the_token_is_never_echoed() -> None:
    short = "s3cr3t"
    with pytest.raises(UsageError) as info:
        _settings("--drain-token", short, "--concurrency", "0", "--app-port", "0")
    message = str(info.value)
    assert "--app-port must be 1-65535" in message
    assert "--drain-token must be at least 16 characters" in message
    assert "--concurrency must be >= 1" in message
    assert short not in message


def test_a_bad_listen_address_is_named() -> None:
    with pytest.raises(UsageError, match="--ops-listen port must be 1-65535"):
        _settings("--ops-listen", "0.0.0.0:99999")


def test_the_ops_port_must_differ_from_the_local_api_port() -> None:
    with pytest.raises(UsageError, match=r"--ops-listen must use another port than .* \(8787\)"):
        _settings("--ops-listen", "0.0.0.0:8787", "--api-port", "8787")


def test_the_token_stays_out_of_reprs() -> None:
    settings = _settings("--ops-listen", "0.0.0.0:9090", "--drain-token", TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in repr(settings.ops)


def test_ops_routes_share_the_local_handlers_and_leave_out_the_keyed_ones() -> None:
    local = {(m, p): h for m, p, h in LOCAL_ROUTES}
    ops = {(m, p): h for m, p, h in OPS_ROUTES}
    assert set(ops) == {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/state"),
        ("GET", "/v1/drain"),
        ("POST", "/v1/drain"),
    }
    for route, handler in ops.items():
        if route[1] != "/v1/drain":
            assert handler is local[route], route
    assert ops["GET", "/v1/drain"] is ops["POST", "/v1/drain"]
    assert ops["POST", "/v1/drain"] is not local["POST", "/v1/drain"]  # the token guard
    assert DRAIN_HEADER == "X-Intent-Drain-Token"  # what the operator's preStop hook sends
