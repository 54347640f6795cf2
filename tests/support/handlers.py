"""The tests' handler processes: the scripted handler and the counting handler, started as
children (:mod:`tests.support.procs`) and read through their record files.

The handlers themselves (``scripted_handler.py``, ``counting_handler.py``) are standard-library
scripts, run as processes; this module is the tests' side of them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import counting_handler, scripted_handler
from tests.support.procs import Child, read_record, spawn

__all__ = ["CountingHandler", "HandlerProcess", "start_counting_handler", "start_handler"]


@dataclass
class HandlerProcess(Child):
    """A running scripted handler."""

    port: int = 0
    record: Path = Path()

    def deliveries(self, intent_id: str | None = None) -> list[dict[str, Any]]:
        """Recorded POSTs (intent deliveries), optionally of one intent."""
        return [
            r
            for r in read_record(self.record)
            if r["method"] == "POST" and (intent_id is None or r["Intent-Id"] == intent_id)
        ]


def start_handler(
    port: int,
    record: Path,
    *,
    health_path: str = "",
    health_fail_file: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> HandlerProcess:
    """Start the scripted handler on 127.0.0.1:``port`` and wait until it accepts connections."""
    args = [
        sys.executable,
        str(scripted_handler.HERE),
        "--port",
        str(port),
        "--record",
        str(record),
    ]
    if health_path:
        args += ["--health-path", health_path]
    if health_fail_file is not None:
        args += ["--health-fail-file", str(health_fail_file)]
    log = record.with_suffix(".stderr")
    proc = spawn(args, log, env=env if env is not None else dict(os.environ))
    handler = HandlerProcess(proc, log, port=port, record=record)
    handler.wait_listening(port, timeout=timeout, what="scripted handler")
    return handler


@dataclass
class CountingHandler(Child):
    """A running counting handler."""

    port: int = 0
    record: Path = Path()

    def lines(self) -> list[dict[str, Any]]:
        return read_record(self.record)

    def arrived(self, intent_id: str) -> bool:
        """The handler has the delivery (it may still be working on it)."""
        arrivals = self.record.with_suffix(".arrivals")
        return arrivals.exists() and intent_id in arrivals.read_text().split()


def start_counting_handler(port: int, record: Path, *, timeout: float = 10.0) -> CountingHandler:
    """Start the counting handler and wait until it accepts connections."""
    log = record.with_suffix(".log")
    args = [
        sys.executable,
        str(counting_handler.HERE),
        "--port",
        str(port),
        "--record",
        str(record),
    ]
    handler = CountingHandler(spawn(args, log), log, port=port, record=record)
    handler.wait_listening(port, timeout=timeout, what="counting handler")
    return handler
