"""The README stays true: its flag tables are the commands' own declarations, its layout
names every package, and its set-up commands are the Makefile's, with what each needs."""

from __future__ import annotations

import os
import re
import subprocess
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


MAKEFILE = README.parent / "Makefile"


def _setup_text() -> str:
    """The README's opening, up to its first section: where the set-up commands are."""
    text = README.read_text()
    return text[: text.index("\n## ")]


def _make(*args: str) -> str:
    """What ``make -n ARGS`` would run (a dry run: nothing is installed or started)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "-n", "-C", str(README.parent), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_every_make_command_in_the_readme_is_a_makefile_target() -> None:
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE.read_text(), flags=re.M))
    text = README.read_text()
    commands = re.findall(r"`make ([^`]+)`", text) + re.findall(r"^make (.+)$", text, re.M)
    named = {
        word for command in commands for word in command.split("#")[0].split() if "=" not in word
    }
    assert {"demo", "test", "unit", "integration", "db-deps", "browser-deps"} <= named
    assert sorted(named - targets) == []


def test_the_setup_names_every_package_make_test_installs_with_apt() -> None:
    makefile = MAKEFILE.read_text()
    cluster = re.search(r"^CLUSTER_PACKAGES := (.+)$", makefile, flags=re.M)
    assert cluster is not None
    packages = set(cluster.group(1).split())
    packages |= set(re.findall(r"apt-get install -y -qq ([a-z][\w.+-]*);", makefile))
    assert {"containerd", "iptables", "valgrind", "postgresql", "chromium"} <= packages
    head = _setup_text()
    assert [p for p in sorted(packages) if f"`{p}`" not in head] == []


def test_the_tiers_without_root_are_what_the_readme_says() -> None:
    # make unit needs what make demo needs: no apt, no other tier.
    unit = _make("unit")
    assert "pytest -q tests/unit" in unit
    assert "apt-get" not in unit
    assert "tests/integration" not in unit
    # make integration installs only its three system packages, and only when missing, and
    # builds the control plane its operator tests start.
    prerequisites = re.search(r"^integration: (.+)$", MAKEFILE.read_text(), flags=re.M)
    assert prerequisites is not None
    assert prerequisites.group(1).split() == [
        "setup",
        "db-deps",
        "browser-deps",
        "bench-deps",
        "cluster-build",
    ]
    assert "pytest -q tests/integration" in _make("integration")
    head = _setup_text()
    for words in ("make unit", "make integration", "make db-deps browser-deps bench-deps", "root"):
        assert words in head, words
