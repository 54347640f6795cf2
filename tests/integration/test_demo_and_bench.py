"""The README's commands: the demo runs to the end, the benchmarks print their figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_EXAMPLE = ROOT / "examples" / "handlers" / "python" / "handler.py"


def test_demo_runs_intents_through_the_example_handler(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "intent_fleet.cli",
            "demo",
            "--intents",
            "12",
            "--state-dir",
            str(tmp_path),
            "--",
            sys.executable,
            str(PYTHON_EXAMPLE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "fulfilled   11/12" in out  # every intent but the one built to fail
    assert "dead 1" in out
    assert '"greeting":"Hello, Ada!"' in out
    assert "dead after 3 attempts (handler failed (500): this one always fails)" in out
    assert "ready 0, delayed 0, claimed 0, dead 1" in out
    assert (tmp_path / "intent-bus.db").exists()
    # Where to look while it runs, and how to log in; never the secret itself.
    assert f"/admin/dashboard  (password: the admin secret in {tmp_path / 'admin-secret'})" in out
    assert (tmp_path / "admin-secret").read_text().strip() not in out
    # The handler answered "busy" once for some intents; none of them was failed for it.
    assert "handler busy answers" in out


def test_demo_needs_a_handler_command() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "intent_fleet.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert "handler command" in res.stderr


def _bench(script: str, *extra: str) -> dict[str, object]:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    report: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return report


def test_bus_benchmark_prints_figures_for_sqlite_and_one_and_two_postgres_replicas() -> None:
    results = _bench("bus.py", "--postgres")["results"]
    assert isinstance(results, list)
    assert [(r["name"], r["replicas"]) for r in results] == [
        ("SQLite", 1),
        ("PostgreSQL x1", 1),
        ("PostgreSQL x2", 2),
    ]
    for result in results:
        medians = result["medians"]
        for key in (
            "publish_per_s_c1",
            "publish_per_s_c8",
            "cycles_per_s_c1",
            "cycles_per_s_c32",
            "pickup_p50_ms",
            "claim_p99_ms_c8",
            "bus_rss_mib",
        ):
            assert medians[key] > 0, (result["name"], key)


def test_bus_instruction_benchmark_prints_figures() -> None:
    """bench/bus_instructions.py runs the bus under callgrind and counts its instructions."""
    report = _bench("bus_instructions.py")
    per_intent = report["per_intent"]
    assert isinstance(per_intent, float) and 1e5 < per_intent < 1e8, report


def test_sidecar_benchmark_prints_figures() -> None:
    medians = _bench("sidecar.py")["medians"]
    assert isinstance(medians, dict)
    for conc in ("1", "8", "32"):
        for key in (
            "jobs_per_s",
            "overhead_dispatch_p50_ms",
            "overhead_report_p99_ms",
            "pickup_p50_ms",
            "sidecar_rss_mib",
        ):
            assert medians[conc][key] > 0, (conc, key)


def test_metrics_benchmark_prints_figures() -> None:
    medians = _bench("metrics.py")["medians"]
    assert isinstance(medians, dict)
    for key in (
        "sidecar_updates_per_intent_ns",
        "operator_scrape_ms",
        "parse_ms_own",
        "parse_ms_prometheus_client",
    ):
        assert medians[key] > 0, key


def test_parsing_benchmark_prints_figures() -> None:
    medians = _bench("parsing.py")["medians"]
    assert isinstance(medians, dict)
    for key in (
        "claim_answer_us",
        "stats_answer_100_goals_us",
        "health_answer_us",
        "bus_publish_body_us",
        "publish_body_types_as_struct_us",
    ):
        assert medians[key] > 0, key


def test_operator_benchmark_prints_figures() -> None:
    """bench/autoscale.py brings up its own control plane, bus and operator, and tears them down."""
    report = _bench("autoscale.py")
    latency = report["latency_s"]
    assert isinstance(latency, dict) and latency, report
    medians = report["medians"]
    assert isinstance(medians, dict) and medians, report


def test_dashboard_benchmark_prints_page_weight_overview_and_first_render() -> None:
    medians = _bench("dashboard.py")["medians"]
    assert isinstance(medians, dict)
    assert 1000 < medians["page_bytes"] < 150_000
    for key in ("overview_p50_ms", "first_render_p50_ms", "first_render_max_ms"):
        assert medians[key] > 0, key
