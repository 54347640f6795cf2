"""Headless Chromium (Debian's package) driven by Playwright, for the dashboard tests.

No browser can be downloaded here, so Playwright is pointed at the system's Chromium; the
flags keep it from reaching for Google's services, which this machine's network refuses.
Screenshots go to ``$INTENT_FLEET_ARTIFACTS`` (default ``.artifacts/`` in the checkout),
one per test, for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, async_playwright

__all__ = ["ARTIFACTS", "chromium", "screenshot_path"]

ARTIFACTS = Path(
    os.environ.get("INTENT_FLEET_ARTIFACTS", Path(__file__).resolve().parents[2] / ".artifacts")
)

_FLAGS = [
    "--no-sandbox",  # root has no user namespace sandbox to give it
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _executable() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Chromium is not installed: run `make browser-deps` (or `make test`)")
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=_executable(), args=_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
