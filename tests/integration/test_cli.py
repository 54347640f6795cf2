"""The ``intent-fleet`` client commands, run as real processes against a real bus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.busproc import BusProcess


def cli(
    *args: str, env: dict[str, str] | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INTENT_")}
    if home is not None:
        full_env["HOME"] = str(home)  # keeps a developer's ~/.apikey out of the test
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tenant(bus: BusProcess, tmp_path: Path) -> dict[str, str]:
    """Environment for a tenant key created with ``intent-fleet keys create``."""
    res = cli(
        "keys",
        "create",
        "--owner",
        "cli-test",
        "--bus-url",
        bus.url,
        env={"INTENT_BUS_ADMIN_SECRET": bus.admin_secret},
        home=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    created = json.loads(res.stdout)
    assert created["api_key"].startswith("tk_")
    assert created["owner"] == "cli-test"
    assert isinstance(created["created_at"], float), created
    return {
        "INTENT_API_KEY": created["api_key"],
        "INTENT_BUS_URL": bus.url,
        "KEY_ID": created["id"],
    }


def test_publish_status_result_and_stats(
    bus: BusProcess, tenant: dict[str, str], tmp_path: Path
) -> None:
    res = cli(
        "publish",
        "resize",
        '{"url": "a.png"}',
        "--priority",
        "300",
        "--max-attempts",
        "2",
        env=tenant,
        home=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    receipt = json.loads(res.stdout)
    assert receipt["status"] == "published"
    intent_id = receipt["id"]

    res = cli("status", intent_id, env=tenant, home=tmp_path)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["status"] == "open"
    assert status["priority"] == 300

    res = cli("stats", "--goal", "resize", env=tenant, home=tmp_path)
    assert res.returncode == 0, res.stderr
    header, row = res.stdout.strip().splitlines()[:2]
    assert header.split()[:3] == ["NAMESPACE", "GOAL", "READY"]
    assert row.split()[:3] == ["default", "resize", "1"]

    res = cli("stats", "--goal", "resize", "--json", env=tenant, home=tmp_path)
    goals = json.loads(res.stdout)["goals"]
    assert goals[0]["ready"] == 1

    res = cli("result", intent_id, env=tenant, home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "open"


def test_idempotent_publish_from_the_cli(tenant: dict[str, str], tmp_path: Path) -> None:
    first = cli("publish", "g", "{}", "--idempotency-key", "order-1", env=tenant, home=tmp_path)
    again = cli("publish", "g", "{}", "--idempotency-key", "order-1", env=tenant, home=tmp_path)
    other = cli(
        "publish", "g", '{"x":1}', "--idempotency-key", "order-1", env=tenant, home=tmp_path
    )
    assert json.loads(first.stdout)["id"] == json.loads(again.stdout)["id"]
    assert other.returncode == 6
    assert "conflict" in other.stderr


def test_kv_set_and_get(tenant: dict[str, str], tmp_path: Path) -> None:
    res = cli("kv", "set", "colour", "teal", "--ttl", "60", env=tenant, home=tmp_path)
    assert res.returncode == 0, res.stderr
    res = cli("kv", "get", "colour", env=tenant, home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "teal"
    res = cli("kv", "get", "missing", env=tenant, home=tmp_path)
    assert res.returncode == 3
    assert "not found" in res.stderr


def test_errors_have_exit_codes_and_go_to_stderr(bus: BusProcess, tmp_path: Path) -> None:
    bad_key = cli(
        "status", "x", env={"INTENT_API_KEY": "nope", "INTENT_BUS_URL": bus.url}, home=tmp_path
    )
    assert bad_key.returncode == 4
    assert bad_key.stdout == ""
    assert "authentication" in bad_key.stderr

    no_key = cli("status", "x", env={"INTENT_BUS_URL": bus.url}, home=tmp_path)
    assert no_key.returncode == 2
    assert "INTENT_API_KEY" in no_key.stderr

    bad_json = cli(
        "publish",
        "g",
        "{not json",
        env={"INTENT_API_KEY": bus.admin_secret, "INTENT_BUS_URL": bus.url},
        home=tmp_path,
    )
    assert bad_json.returncode == 2
    assert "not valid JSON" in bad_json.stderr

    missing = cli(
        "status",
        "0" * 32,
        env={"INTENT_API_KEY": bus.admin_secret, "INTENT_BUS_URL": bus.url},
        home=tmp_path,
    )
    assert missing.returncode == 3

    dead_bus = cli(
        "status",
        "x",
        env={"INTENT_API_KEY": "k", "INTENT_BUS_URL": "http://127.0.0.1:9"},
        home=tmp_path,
    )
    assert dead_bus.returncode == 5
    assert "unreachable" in dead_bus.stderr


def test_keys_list_and_revoke(bus: BusProcess, tenant: dict[str, str], tmp_path: Path) -> None:
    admin = {"INTENT_BUS_ADMIN_SECRET": bus.admin_secret, "INTENT_BUS_URL": bus.url}
    listed = cli("keys", "list", env=admin, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "tk_" not in listed.stdout  # secrets are never listed
    assert tenant["KEY_ID"] in listed.stdout

    revoked = cli("keys", "revoke", "--id", tenant["KEY_ID"], env=admin, home=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    after = cli("stats", env=tenant, home=tmp_path)
    assert after.returncode == 4

    no_secret = cli("keys", "list", env={"INTENT_BUS_URL": bus.url}, home=tmp_path)
    assert no_secret.returncode == 2


def test_bus_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    res = cli("bus", "--db", str(tmp_path / "x.db"), "--port", "0", home=tmp_path)
    assert res.returncode == 2
    assert "admin secret" in res.stderr


def test_help_lists_every_command() -> None:
    res = cli("--help")
    assert res.returncode == 0
    for name in ("bus", "publish", "status", "result", "kv", "keys", "stats", "demo"):
        assert name in res.stdout


def test_keys_create_key_only_prints_just_the_key_for_a_secret(
    bus: BusProcess, tmp_path: Path
) -> None:
    secret_file = tmp_path / "admin-secret"
    secret_file.write_text(bus.admin_secret + "\n")
    res = cli(
        "keys",
        "create",
        "--owner",
        "team-a",
        "--key-only",
        "--bus-url",
        bus.url,
        "--admin-secret-file",
        str(secret_file),
        home=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    key = res.stdout.strip()
    assert key.startswith("tk_") and len(key) == 43 and "\n" not in key
    res = cli(
        "publish", "g", "{}", env={"INTENT_API_KEY": key, "INTENT_BUS_URL": bus.url}, home=tmp_path
    )
    assert res.returncode == 0, res.stderr
