"""House rules that import-linter cannot express."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "intent_fleet"
#: The only places an HTTP *server* may be built (CONTRIBUTING.md, "Layout").
SERVER_MODULES = {"bus", "sidecar/local_api.py", "operator/probes.py"}


def _imports_aiohttp_web(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "aiohttp"
            and any(alias.name == "web" for alias in node.names)
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiohttp.web"):
            return True
        if isinstance(node, ast.Import) and any(
            a.name.startswith("aiohttp.web") for a in node.names
        ):
            return True
    return False


def test_http_servers_live_only_in_the_bus_the_sidecar_api_and_operator_probes() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        allowed = rel in SERVER_MODULES or rel.split("/")[0] in SERVER_MODULES
        if not allowed and _imports_aiohttp_web(path):
            offenders.append(rel)
    assert offenders == []


def test_the_check_sees_a_server_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from aiohttp import web\n")
    assert _imports_aiohttp_web(sample)


def test_no_top_level_package_named_operator() -> None:
    assert not (SRC.parent / "operator").exists()
    # Scripts run from bench/ and hack/cluster/ put their directory first on sys.path, where an
    # operator.py would shadow the standard library's module for every sibling script.
    root = SRC.parents[1]
    for scripts in ("bench", "hack/cluster", "tests"):
        assert not list((root / scripts).rglob("operator.py")), scripts


def test_every_subpackage_documents_itself_and_exports() -> None:
    for init in SRC.glob("*/__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init} has no docstring"
        names = {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        names |= {
            n.target.id
            for n in tree.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        }
        assert "__all__" in names, f"{init} has no __all__"


#: Where SQL may be written: the SQLite store, and the PostgreSQL backend's own package.
SQL_MODULES = ("bus/store.py", "bus/postgres/")


def test_sql_lives_only_in_the_two_bus_backends() -> None:
    # One place per backend to read for its schema and every statement.
    sql = re.compile(r"\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET)\b|\bsqlite3\b|\basyncpg\b")
    offenders = sorted(
        rel
        for path in SRC.rglob("*.py")
        if not (rel := path.relative_to(SRC).as_posix()).startswith(SQL_MODULES)
        and sql.search(path.read_text())
    )
    assert offenders == []


def test_every_package_draws_its_error_tree_in_errors_py() -> None:
    # Exceptions are declared in the package's errors.py (the tree in its docstring); a
    # module may keep a private one for its own control flow, derived from that tree.
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    offenders.append(f"{path.relative_to(SRC)}:{node.name}")
    assert offenders == []
    for package in ("bus", "cli", "operator", "protocol", "sidecar"):
        doc = ast.get_docstring(ast.parse((SRC / package / "errors.py").read_text())) or ""
        assert "::" in doc, f"{package}/errors.py draws no tree"
