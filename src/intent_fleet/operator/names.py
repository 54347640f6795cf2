"""Kubernetes object names, checked where they enter the operator.

A name from a spec ends up as a segment of an API path. The API server would refuse most
malformed names, but only after the request is sent, and an HTTP client that normalises dot
segments turns ``../../kube-system/secrets/x`` into a request for another namespace's object
before the server sees it. So every name is checked here, against the same rules the API server
applies to the object it names (apimachinery's ``IsDNS1123Subdomain`` / ``IsDNS1123Label``), and
the client percent-encodes each segment anyway.

Messages name the field and the rule, never echo the value: it is attacker-chosen and may be
long, multi-line or built to look like something else in a log.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import InvalidNameError

__all__ = [
    "DNS1123_LABEL_MAX",
    "DNS1123_SUBDOMAIN_MAX",
    "check_label",
    "check_subdomain",
    "is_dns1123_label",
    "is_dns1123_subdomain",
]

DNS1123_LABEL_MAX: Final = 63
DNS1123_SUBDOMAIN_MAX: Final = 253

_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# \Z, not $: a trailing newline must not pass.
_LABEL_RE: Final = re.compile(rf"{_LABEL}\Z")
_SUBDOMAIN_RE: Final = re.compile(rf"{_LABEL}(\.{_LABEL})*\Z")


def is_dns1123_label(value: object) -> bool:
    """Namespaces and Services: 1-63 lower-case letters, digits and '-', alphanumeric ends."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_LABEL_MAX
        and value.isascii()
        and _LABEL_RE.match(value) is not None
    )


def is_dns1123_subdomain(value: object) -> bool:
    """Secrets, Deployments, Pods, Leases: dot-separated labels, at most 253 characters."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= DNS1123_SUBDOMAIN_MAX
        and value.isascii()
        and _SUBDOMAIN_RE.match(value) is not None
    )


_SUBDOMAIN_RULE: Final = (
    f"a DNS-1123 subdomain (at most {DNS1123_SUBDOMAIN_MAX} lower-case letters, digits, '-' "
    "and '.', starting and ending with a letter or digit)"
)
_LABEL_RULE: Final = (
    f"a DNS-1123 label (at most {DNS1123_LABEL_MAX} lower-case letters, digits and '-', "
    "starting and ending with a letter or digit)"
)


def _checked(value: object, field: str, valid: bool, rule: str) -> str:
    if not valid or not isinstance(value, str):
        raise InvalidNameError(f"{field} must be {rule}")
    return value


def check_subdomain(value: object, field: str) -> str:
    """``value`` if it is a DNS-1123 subdomain, else :class:`InvalidNameError` naming ``field``."""
    return _checked(value, field, is_dns1123_subdomain(value), _SUBDOMAIN_RULE)


def check_label(value: object, field: str) -> str:
    """``value`` if it is a DNS-1123 label, else :class:`InvalidNameError` naming ``field``."""
    return _checked(value, field, is_dns1123_label(value), _LABEL_RULE)
