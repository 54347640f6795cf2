"""Integration fixtures: a real bus process per test (or per module, where stated)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.busproc import BusProcess, start_bus


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[BusProcess]:
    """A fresh bus with its own database, stopped (by PID) after the test."""
    proc = start_bus(tmp_path / "bus")
    try:
        yield proc
    finally:
        code = proc.stop()
        assert code == 0, f"bus exited with {code}:\n{proc.logs()}"
