"""Names from a spec never become a path to anything else: checked, and encoded anyway."""

from __future__ import annotations

import pytest

from intent_fleet.operator.errors import InvalidNameError, InvalidSpecError
from intent_fleet.operator.kube import DEPLOYMENTS, SECRETS, Resource, _segment
from intent_fleet.operator.names import check_label, check_subdomain, is_dns1123_subdomain
from intent_fleet.operator.spec import parse_worker
from tests.unit.operator.test_render import worker_body

#: What an attacker writes where a Secret name goes (the e2e suite runs the same table against
#: a real API server).
HOSTILE_NAMES = [
    "../../kube-system/secrets/victim",
    "..",
    ".",
    "victim/..",
    "a/b",
    "..%2F..%2Fkube-system%2Fsecrets%2Fvictim",
    "%2e%2e",
    "victim%00",
    "vïctim",
    "\u2174ictim",  # a small roman numeral five: NFKC folds it to "victim"
    "Victim",
    "",
    " victim",
    "victim\n",
    "victim?watch=true",
    "victim#x",
    "-victim",
    "victim.",
    "a..b",
    "v" * 254,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_refused_before_any_path_is_built(name: str) -> None:
    assert not is_dns1123_subdomain(name)
    with pytest.raises(InvalidNameError) as refused:
        SECRETS.item("team-a", name)
    # The message names the field and the rule, never echoes the attacker's string.
    assert "Secret name must be a DNS-1123 subdomain" in str(refused.value)
    if len(name.strip()) > 2:
        assert name not in str(refused.value)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_secret_names_in_a_spec_are_invalid_specs_naming_the_field(name: str) -> None:
    body = worker_body(bus={"url": "http://bus:8080", "credentialsSecretRef": {"name": name}})
    with pytest.raises(InvalidSpecError, match=r"spec\.bus\.credentialsSecretRef\.name"):
        parse_worker(body)
    prom = {"url": "http://p:9090/metrics", "metric": "m", "authSecretRef": {"name": name}}
    body = worker_body(backlogSource={"type": "prometheus", "prometheus": prom})
    with pytest.raises(InvalidSpecError, match=r"authSecretRef\.name"):
        parse_worker(body)


def test_valid_names_pass_and_make_the_paths_the_api_expects() -> None:
    assert SECRETS.item("team-a", "bus-key") == "/api/v1/namespaces/team-a/secrets/bus-key"
    assert (
        DEPLOYMENTS.item("team-a", "resize.v2", "scale")
        == "/apis/apps/v1/namespaces/team-a/deployments/resize.v2/scale"
    )
    assert check_subdomain("a" * 253, "x") == "a" * 253
    assert check_label("a" * 63, "x") == "a" * 63


@pytest.mark.parametrize("namespace", ["kube-system/..", "..", "Team", "a.b", "n" * 64, ""])
def test_namespaces_are_dns_labels(namespace: str) -> None:
    with pytest.raises(InvalidNameError, match="namespace must be a DNS-1123 label"):
        SECRETS.collection(namespace)


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [("a/b", "a%2Fb"), ("%2F", "%252F"), ("é", "%C3%A9"), ("a b", "a%20b"), ("?x", "%3Fx")],
)
def test_every_segment_is_percent_encoded_even_past_the_check(raw: str, encoded: str) -> None:
    # Defence in depth: a future caller that skips the name check still cannot add a segment.
    assert _segment(raw) == encoded


@pytest.mark.parametrize("segment", ["", ".", ".."])
def test_dot_segments_survive_no_encoding_so_they_are_refused(segment: str) -> None:
    with pytest.raises(InvalidNameError):
        _segment(segment)


def test_a_subresource_is_a_segment_too() -> None:
    resource = Resource("v1", "pods", "Pod")
    with pytest.raises(InvalidNameError):
        resource.item("team-a", "p", "..")
    assert resource.item("team-a", "p", "status/../x").endswith("/p/status%2F..%2Fx")
