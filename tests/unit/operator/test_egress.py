"""The egress policy's decisions, address by address (the wiring is tested with real sockets)."""

from __future__ import annotations

import pytest

from intent_fleet.operator.egress import EgressPolicy, parse_allow_list
from intent_fleet.operator.errors import BacklogUnavailableError, DestinationRefusedError

REFUSED = [
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_metadata_and_loopback_are_refused_by_default(address: str, why: str) -> None:
    with pytest.raises(DestinationRefusedError, match=why) as refused:
        EgressPolicy().check("bus.example", address)
    # The refusal is a backlog failure: replicas are held and the condition says why.
    assert isinstance(refused.value, BacklogUnavailableError)


@pytest.mark.parametrize("address", ["10.96.0.10", "192.168.1.5", "2001:db8::1", "8.8.8.8"])
def test_ordinary_addresses_pass_without_an_allow_list(address: str) -> None:
    EgressPolicy().check("bus.example", address)


def test_an_allow_list_is_the_only_way_out() -> None:
    policy = parse_allow_list(["10.96.0.0/12", "Intent-Bus.intent-fleet-system.svc."])
    policy.check("anything", "10.96.3.4")
    policy.check("intent-bus.intent-fleet-system.svc", "10.244.1.2")
    with pytest.raises(DestinationRefusedError, match="not in the operator's backlog allow-list"):
        policy.check("internal-admin", "10.244.1.2")


def test_only_an_entry_as_narrow_as_the_refused_range_lifts_a_refusal() -> None:
    wide = parse_allow_list(["0.0.0.0/0", "::/0"])
    for address in ("169.254.169.254", "127.0.0.1", "::1", "fe80::1"):
        with pytest.raises(DestinationRefusedError):
            wide.check("h", address)
    narrow = parse_allow_list(["127.0.0.1/32", "0.0.0.0/0"])
    narrow.check("h", "127.0.0.1")
    narrow.check("h", "10.0.0.1")
    with pytest.raises(DestinationRefusedError):
        narrow.check("h", "127.0.0.2")
    with pytest.raises(DestinationRefusedError):
        narrow.check("h", "169.254.169.254")
    # A host name entry admits the name, never a refused address it resolves to.
    with pytest.raises(DestinationRefusedError):
        parse_allow_list(["metadata.google.internal"]).check(
            "metadata.google.internal", "169.254.169.254"
        )


def test_for_pod_addresses_the_allow_list_only_lifts_refusals() -> None:
    policy = EgressPolicy(
        allowed_networks=parse_allow_list(["127.0.0.1/32"]).allowed_networks,
        restrict_to_allowed=False,
    )
    policy.check("10.244.0.7", "10.244.0.7")
    policy.check("127.0.0.1", "127.0.0.1")
    with pytest.raises(DestinationRefusedError):
        policy.check("169.254.1.1", "169.254.1.1")


@pytest.mark.parametrize("entry", ["bus:8080", "http://bus", "bus/x", "b us", "ünï", "a..b"])
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a host name"):
        parse_allow_list([entry])


def test_an_unparsable_address_is_refused() -> None:
    with pytest.raises(DestinationRefusedError, match="not an IP address"):
        EgressPolicy().check("h", "not-an-ip")
