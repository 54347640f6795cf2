"""The operator's RBAC: one declaration, two renderings, and operator/rbac.yaml in step."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from intent_fleet.cli.main import main
from intent_fleet.operator.rbac import (
    CLUSTER_RULES,
    LEADER_RULES,
    NAMESPACED_RULES,
    RBAC_YAML_HEADER,
    manifests,
    render_yaml,
)
from tests.support.cluster import REPO

RBAC_YAML = REPO / "operator" / "rbac.yaml"


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["kind"], d["metadata"].get("namespace")) for d in docs]


def test_operator_rbac_yaml_is_the_cluster_wide_rendering() -> None:
    expected = render_yaml(header=RBAC_YAML_HEADER)
    assert RBAC_YAML.read_text() == expected, (
        "operator/rbac.yaml is out of step with intent_fleet/operator/rbac.py: regenerate it "
        "with render_yaml(header=RBAC_YAML_HEADER)"
    )
    assert list(yaml.safe_load_all(RBAC_YAML.read_text())) == manifests()


def test_cluster_wide_is_one_cluster_role_with_every_rule() -> None:
    docs = manifests()
    assert kinds(docs) == [
        ("Namespace", None),
        ("ServiceAccount", "intent-fleet-system"),
        ("ClusterRole", None),
        ("ClusterRoleBinding", None),
        ("Role", "intent-fleet-system"),
        ("RoleBinding", "intent-fleet-system"),
    ]
    cluster_role = docs[2]
    expected = [r.as_policy_rule() for r in (*CLUSTER_RULES, *NAMESPACED_RULES)]
    assert cluster_role["rules"] == expected


def test_a_namespace_list_gets_roles_there_and_nothing_cluster_wide() -> None:
    docs = manifests(namespaces=["team-a", "team-b"], operator_namespace="ops")
    assert kinds(docs) == [
        ("Namespace", None),
        ("ServiceAccount", "ops"),
        ("Role", "team-a"),
        ("RoleBinding", "team-a"),
        ("Role", "team-b"),
        ("RoleBinding", "team-b"),
        ("Role", "ops"),
        ("RoleBinding", "ops"),
    ]
    for role in (docs[2], docs[4]):
        assert role["rules"] == [r.as_policy_rule() for r in NAMESPACED_RULES]
    assert docs[6]["rules"] == [r.as_policy_rule() for r in LEADER_RULES]
    for binding in (docs[3], docs[5], docs[7]):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "intent-fleet-operator", "namespace": "ops"}
        ]


def test_no_rule_lists_secrets_or_uses_wildcards() -> None:
    for rule in (*CLUSTER_RULES, *NAMESPACED_RULES, *LEADER_RULES):
        assert "*" not in (*rule.api_groups, *rule.resources, *rule.verbs), rule
        if {"secrets", "serviceaccounts"} & set(rule.resources):
            assert rule.verbs == ("get",), rule
        # Nothing may delete, or escalate through RBAC, impersonation or tokens.
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule.verbs
        ), rule


def test_the_command_prints_the_rendering_for_its_namespaces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["operator", "--namespaces", "team-a", "--lease-namespace", "ops", "--print-rbac"])
    assert code == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == manifests(namespaces=["team-a"], operator_namespace="ops")
