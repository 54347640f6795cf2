"""The chart's copies and documents cannot drift from their sources.

charts/intent-fleet keeps a copy of the CRD and of the operator's RBAC rules (Helm reads only
files inside the chart), its appVersion names the images, and its README documents values.yaml.
Rendering and the schema are exercised with helm itself in tests/e2e/test_chart.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from intent_fleet import __version__
from intent_fleet.operator import rbac

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "intent-fleet"


def test_the_chart_crd_is_the_crds_directory_copy() -> None:
    source = REPO / "crds" / "intentworkers.intentbus.io.yaml"
    copy = CHART / "files" / "intentworkers.intentbus.io.yaml"
    assert copy.read_bytes() == source.read_bytes(), (
        f"cp {source.relative_to(REPO)} {copy.relative_to(REPO)}"
    )


def test_the_chart_rbac_rules_are_the_operators() -> None:
    rules = CHART / "files" / "operator-rules.yaml"
    assert rules.read_text() == rbac.render_rules_file(), (
        "regenerate with: python -c 'from intent_fleet.operator import rbac; "
        'print(rbac.render_rules_file(), end="")\' > charts/intent-fleet/files/operator-rules.yaml'
    )
    # The same rules as operator/rbac.yaml's ClusterRole and as every per-namespace Role.
    loaded = yaml.safe_load(rules.read_text())
    assert loaded == rbac.rules_document()
    documents = list(yaml.safe_load_all((REPO / "operator" / "rbac.yaml").read_text()))
    (cluster_role,) = [d for d in documents if d and d["kind"] == "ClusterRole"]
    assert cluster_role["rules"] == loaded["cluster"] + loaded["namespaced"]


def test_the_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == project == __version__


def value_rows(text: str) -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every key documented with `# --` in values.yaml."""
    values = yaml.safe_load(text)
    rows: list[tuple[str, Any, str]] = []
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("# --"):
            pending = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if pending is not None:
                pending.append(stripped.removeprefix("#").strip())
            continue
        key = re.match(r"([A-Za-z0-9_]+):", stripped)
        if key is None:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(1)))
        path = [name for _, name in stack]
        if pending is not None:
            node = values
            for name in path:
                node = node[name]
            rows.append((".".join(path), node, " ".join(pending)))
            pending = None
    return rows


def leaves(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of values.yaml; a key whose value is a map it documents counts as one."""
    found: set[str] = set()
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            found |= leaves(value, f"{path}.") | {path}
        else:
            found.add(path)
    return found


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = {key for key, _, _ in value_rows(text)}
    values = yaml.safe_load(text)
    # A documented map (resources) stands for its children; an undocumented one is a section.
    undocumented = {
        key
        for key in leaves(values)
        if key not in documented
        and not any(key.startswith(f"{parent}.") for parent in documented)
        and not isinstance(lookup(values, key), dict)
    }
    assert not undocumented, f"values without a `# --` comment: {sorted(undocumented)}"


def lookup(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for name in dotted.split("."):
        node = node[name]
    return node


def test_the_readme_table_is_values_yaml() -> None:
    rows = value_rows((CHART / "values.yaml").read_text())
    expected = [f"| `{key}` | `{json.dumps(default)}` | {text} |" for key, default, text in rows]
    readme = (CHART / "README.md").read_text().splitlines()
    start = readme.index("| Key | Default | Description |") + 2
    table = [line for line in readme[start:] if line.startswith("|")]
    assert table == expected, "the README's values table, from values.yaml:\n" + "\n".join(expected)


def schema_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if schema.get("type") == "object" or "properties" in schema:
        found.append((path or "(root)", schema))
    for name, child in schema.get("properties", {}).items():
        found += schema_objects(child, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, dict):
        found += schema_objects(items, f"{path}[]")
    return found


def test_the_schema_refuses_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = [
        path
        for path, node in schema_objects(schema)
        # Free-form maps (labels, annotations, nodeSelector) say what their values are instead.
        if node.get("additionalProperties") is not False
        and not isinstance(node.get("additionalProperties"), dict)
        and "properties" in node
    ]
    assert not open_objects, f"objects that accept unknown keys: {open_objects}"


def test_the_schema_names_every_value_and_nothing_else() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def keys(node: dict[str, Any], schema_node: dict[str, Any], prefix: str) -> None:
        properties = schema_node.get("properties", {})
        if "properties" not in schema_node:
            return
        # `global` is Helm's: every chart may receive it.
        expected = set(node) | ({"global"} if not prefix else set())
        assert set(properties) == expected, f"{prefix or '(root)'}: schema {sorted(properties)}"
        for name, value in node.items():
            if isinstance(value, dict):
                keys(value, properties[name], f"{prefix}{name}.")

    keys(values, schema, "")
