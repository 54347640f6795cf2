"""The README's commands: the demo runs to the end, the benchmark prints its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_fulfils_every_intent(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "intent_fleet.cli.main",
            "demo",
            "--intents",
            "12",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "all 12 intents fulfilled" in res.stdout
    assert "failed-and-retried  1" in res.stdout  # the intent that fails once came back
    assert "Hello, " in res.stdout
    assert "ready 0, delayed 0, claimed 0, dead 0" in res.stdout
    assert (tmp_path / "intent-bus.db").exists()


def test_bus_benchmark_prints_figures() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bus.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    medians = report["medians"]
    for key in (
        "publish_per_s_c8",
        "cycles_per_s_c1",
        "cycles_per_s_c32",
        "pickup_p50_ms",
        "claim_p99_ms_c8",
        "bus_rss_mib",
    ):
        assert medians[key] > 0, key
