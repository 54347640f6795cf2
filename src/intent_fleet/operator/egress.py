"""Where the operator's own HTTP requests may go: never cloud metadata, never its own loopback.

An IntentWorker's author chooses ``bus.url`` and ``backlogSource.prometheus.url``, and the
operator fetches them from inside the cluster, with a key. Left alone, that turns the operator
into a proxy for its author: ``http://169.254.169.254/`` hands out the node's cloud credentials
on most clouds, and ``http://127.0.0.1:8081/`` is the operator's own metrics port.

The policy is checked on the address a request really connects to, after name resolution, so a
name that resolves (or re-resolves) to a refused address is refused too:

* always refused: link-local (``169.254.0.0/16``, ``fe80::/10``), the cloud metadata addresses
  outside it, loopback and the unspecified addresses (``0.0.0.0`` reaches loopback on Linux),
  also when written as IPv4-mapped IPv6;
* an allow-list (``--backlog-allow``), when given, is the only place requests to URLs from
  a spec may go: CIDRs match the connected address, host names match the URL's host exactly
  (requests to worker pods' own addresses, which come from the API server, are not held to it);
* an allow-list entry lifts a refusal only when it is at least as specific as the refused
  range (``127.0.0.1/32`` admits a bus on the operator's loopback for local runs;
  ``0.0.0.0/0`` does not admit the metadata address).

Three hooks, because aiohttp has three paths to a connection:

* the socket factory sees every address a socket is about to connect to, whatever the URL
  spelled (a literal, a name, a redirect hop): the refusals are enforced there;
* :class:`GuardedResolver` sees a name with its addresses: the whole policy, host names of the
  allow-list included;
* :func:`trace_config` sees the URL of the first request and of every redirect hop: the
  allow-list for IP literals, which aiohttp connects to without resolving.

:class:`GuardedSessions` holds the operator's two sessions: one for URLs from specs, one for
worker pods.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from .errors import DestinationRefusedError

__all__ = [
    "REFUSED_NETWORKS",
    "EgressPolicy",
    "GuardedResolver",
    "GuardedSessions",
    "guarded_session",
    "parse_allow_list",
    "trace_config",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: (network, why) pairs no request may reach unless an allow-list entry names them as tightly.
REFUSED_NETWORKS: Final[tuple[tuple[IPNetwork, str], ...]] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("fe80::/10", "link-local (cloud metadata)"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("100.100.100.200/32", "cloud metadata"),
        ("127.0.0.0/8", "the operator's own loopback"),
        ("::1/128", "the operator's own loopback"),
        ("0.0.0.0/8", "unspecified (reaches loopback)"),
        ("::/128", "unspecified (reaches loopback)"),
    )
)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The refused ranges, and the optional allow-list, as one decision."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    #: False: the allow-list only lifts refusals (entries as narrow as a refused range) and
    #: does not restrict anything else; for addresses that come from the API server.
    restrict_to_allowed: bool = True

    @property
    def restricted(self) -> bool:
        return self.restrict_to_allowed and bool(self.allowed_networks or self.allowed_hosts)

    def check(self, host: str, address: str) -> None:
        """Raise :class:`DestinationRefusedError` unless ``host`` at ``address`` may be reached."""
        ip = self.check_refusals(host, address)
        if not self.restricted:
            return
        name = host.lower().rstrip(".")
        if name in self.allowed_hosts or any(
            ip in allowed for allowed in self.allowed_networks if allowed.version == ip.version
        ):
            return
        raise DestinationRefusedError(
            f"host {host!r} ({ip}) is not in the operator's backlog allow-list"
        )

    def check_refusals(self, host: str, address: str) -> IPAddress:
        """The refused ranges and their narrow exceptions only; the parsed address if it passes."""
        ip = _address(address)
        if ip is None:
            raise DestinationRefusedError(f"host {host!r}: not an IP address after resolution")
        for network, why in REFUSED_NETWORKS:
            if ip.version == network.version and ip in network:
                if not any(
                    ip in allowed and allowed.prefixlen >= network.prefixlen
                    for allowed in self.allowed_networks
                    if allowed.version == ip.version
                ):
                    raise DestinationRefusedError(
                        f"host {host!r} resolves to {ip}, which is {why}: the operator does not "
                        "connect there (an operator allow-list entry at least as narrow admits it)"
                    )
                break
        return ip


def parse_allow_list(entries: Iterable[str]) -> EgressPolicy:
    """An :class:`EgressPolicy` from CIDRs, addresses and host names; ValueError names a bad one."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        labels = name.split(".")
        if not all(
            0 < len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()
            for label in labels
        ):
            raise ValueError(f"allow-list entry {entry!r} is neither a CIDR nor a host name")
        hosts.add(name)
    return EgressPolicy(allowed_networks=tuple(networks), allowed_hosts=frozenset(hosts))


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, with every answer checked against the policy."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            self._policy.check(host, answer["host"])
        return answers

    async def close(self) -> None:
        await self._inner.close()


def socket_factory(policy: EgressPolicy) -> aiohttp.SocketFactoryType:
    """Makes each socket only after checking the address it is for against the refusals."""

    def make(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        policy.check_refusals(str(sockaddr[0]), str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    return make


def _check_literal(policy: EgressPolicy, url: yarl.URL) -> None:
    host = url.raw_host or ""
    if _address(host) is not None:
        policy.check(host, host)


def trace_config(policy: EgressPolicy) -> aiohttp.TraceConfig:
    """Holds IP-literal URLs, first and redirected, to the allow-list."""

    async def on_request_start(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
    ) -> None:
        _check_literal(policy, params.url)

    async def on_request_redirect(
        _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
    ) -> None:
        location = params.response.headers.get("Location")
        if location:
            _check_literal(policy, params.url.join(yarl.URL(location)))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_redirect.append(on_request_redirect)
    return config


def guarded_session(
    policy: EgressPolicy,
    *,
    trace_configs: Sequence[aiohttp.TraceConfig] = (),
    ssl_context: ssl.SSLContext | bool = True,
) -> aiohttp.ClientSession:
    """The operator's HTTP session for backlog sources and sidecars: every request checked."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy), socket_factory=socket_factory(policy), ssl=ssl_context
    )
    return aiohttp.ClientSession(
        connector=connector, trace_configs=[trace_config(policy), *trace_configs]
    )


@dataclass(frozen=True, slots=True)
class GuardedSessions:
    """The operator's HTTP sessions, each behind the egress policy."""

    #: For URLs an IntentWorker names (bus, Prometheus): the whole policy.
    spec: aiohttp.ClientSession
    #: For worker pods' ops listeners, at addresses from the API server: refusals only.
    pods: aiohttp.ClientSession

    @classmethod
    def open(
        cls, policy: EgressPolicy, *, ssl_context: ssl.SSLContext | bool = True
    ) -> GuardedSessions:
        """``ssl_context`` verifies the https:// URLs of specs (a private CA: ``--bus-ca-file``)."""
        pods = dataclasses.replace(policy, restrict_to_allowed=False)
        return cls(
            spec=guarded_session(policy, ssl_context=ssl_context), pods=guarded_session(pods)
        )

    async def close(self) -> None:
        await self.spec.close()
        await self.pods.close()
