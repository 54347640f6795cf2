"""The README stays true: its flag tables are the commands' own declarations, and its layout
names every package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import intent_fleet
from intent_fleet.cli import bus_command, operator_command, sidecar_command
from intent_fleet.cli.flags import Flag, markdown_table
from intent_fleet.operator.render import render_deployment
from intent_fleet.operator.spec import parse_worker
from tests.unit.operator.test_render import worker_body

README = Path(__file__).resolve().parents[2] / "README.md"
SRC = Path(intent_fleet.__file__).parent

TABLES = {
    "sidecar-flags": sidecar_command.FLAGS,
    "bus-flags": bus_command.FLAGS,
    "operator-flags": operator_command.FLAGS,
}
#: Set by the kubelet from the downward API, not by people: they keep their Kubernetes names.
DOWNWARD_API = {"POD_NAME", "POD_NAMESPACE"}


def _section(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start -->") + len(f"<!-- {name}:start -->")
    return text[start : text.index(f"<!-- {name}:end -->")].strip()


@pytest.mark.parametrize("name", TABLES)
def test_each_commands_flag_table_matches_its_declaration(name: str) -> None:
    assert _section(README.read_text(), name) == markdown_table(TABLES[name])


@pytest.mark.parametrize("name", TABLES)
def test_every_flag_has_its_own_intent_environment_variable(name: str) -> None:
    flags: tuple[Flag, ...] = TABLES[name]
    named = [f.env for f in flags if f.env]
    assert len(set(named)) == len(named)
    assert all(env.startswith("INTENT_") or env in DOWNWARD_API for env in named)
    assert [f.name for f in flags if not f.env] in ([], ["--dev"])


def test_every_variable_the_operator_renders_is_one_the_sidecar_reads() -> None:
    deployment = render_deployment(parse_worker(worker_body()), 1)
    containers = deployment["spec"]["template"]["spec"]["initContainers"]
    sidecar = next(c for c in containers if c["name"] == "intent-sidecar")
    rendered = {e["name"] for e in sidecar["env"]}
    declared = {f.env for f in sidecar_command.FLAGS}
    assert rendered - declared == set()
    assert {"INTENT_GOAL", "INTENT_BUS_URL", "INTENT_API_KEY_FILE"} <= rendered


def test_the_layout_and_the_package_docstring_name_every_package() -> None:
    packages = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))
    layout = _section_after(README.read_text(), "## Layout")
    doc = intent_fleet.__doc__ or ""
    for package in packages:
        assert f"src/intent_fleet/{package} " in layout, package
        assert f"``{package}``" in doc, package


def _section_after(text: str, heading: str) -> str:
    body = text[text.index(heading) + len(heading) :]
    match = re.search(r"^## ", body, flags=re.M)
    return body[: match.start()] if match else body


def test_readme_starts_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head
    assert "make test" in head
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
