"""The dashboard in a real browser: headless Chromium, driven by Playwright, against a real
bus process. Each test leaves a screenshot in the artefacts directory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import chromium, screenshot_path
from tests.support.busproc import BusProcess
from tests.support.rawbus import RawBus

# The page is the same on both backends (test_dashboard.py covers its API on each).
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def _open(browser: Browser, bus: BusProcess, **context: Any) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(bus.url + "/admin/dashboard")
    return page


async def _log_in(page: Page, password: str) -> None:
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")


async def test_a_wrong_password_is_refused_and_the_right_one_opens_the_board(
    browser: Browser, bus: BusProcess
) -> None:
    page = await _open(browser, bus)
    await expect(page.locator("#login")).to_be_visible()
    await _log_in(page, "not-the-secret")
    await expect(page.locator("#login-error")).to_have_text("Wrong password.")
    await expect(page.locator("#board")).to_be_hidden()
    await _log_in(page, bus.admin_secret)
    await expect(page.locator("#board")).to_be_visible()
    await expect(page.locator("#state")).to_contain_text("live")
    # The session outlives a reload; the cookie is out of the page's reach.
    await page.reload()
    await expect(page.locator("#board")).to_be_visible()
    assert "intent_dashboard" not in await page.evaluate("document.cookie")
    await page.screenshot(path=screenshot_path("dashboard-login"), full_page=True)


async def test_a_published_intent_shows_up_within_two_seconds(
    browser: Browser, bus: BusProcess, raw: RawBus
) -> None:
    page = await _open(browser, bus)
    await _log_in(page, bus.admin_secret)
    await expect(page.locator("#goals-empty")).to_be_visible()
    key, _ = await raw.new_key("live")
    sent = time.monotonic()
    await raw.publish(key, {"goal": "resize-images", "payload": {"n": 1}})
    row = page.locator("#goals tr[data-goal='default/resize-images']")
    await expect(row).to_be_visible(timeout=2000)
    assert time.monotonic() - sent < 2.5  # the 2 s above, plus the publish itself
    await expect(row.locator("td").nth(2)).to_have_text("1")
    await expect(page.locator("#f-ready")).to_have_text("1")
    # A worker claims it: it shows with what it holds, and the goal's counts move.
    claimed = await raw.claim(key, goal="resize-images", headers={"X-Worker-ID": "pod-1"})
    assert claimed is not None
    worker = page.locator("#workers tr[data-worker='pod-1']")
    await expect(worker.locator("td").nth(3)).to_have_text("1", timeout=2000)
    await expect(row.locator("td").nth(4)).to_have_text("1")  # claimed
    await raw.fulfill(key, claimed["id"], {"claim_token": claimed["claim_token"]})
    await expect(row.locator("td").nth(7)).to_have_text("1", timeout=2000)  # fulfilled/min
    await expect(worker.locator("td").nth(3)).to_have_text("0")
    await page.screenshot(path=screenshot_path("dashboard-live"), full_page=True)


async def test_a_dead_letter_is_retried_from_the_page_and_goes_back_to_ready(
    browser: Browser, bus: BusProcess, raw: RawBus
) -> None:
    key, _ = await raw.new_key("retrying")
    intent_id = await raw.dead_letter(key, "charge-card", {"order": 17})
    page = await _open(browser, bus)
    await _log_in(page, bus.admin_secret)
    row = page.locator(f"#dead tr[data-id='{intent_id}']")
    await expect(row).to_contain_text("handler exploded")
    await expect(row.locator("td.payload")).to_have_text('{"order":17}')
    await row.locator("button.retry").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await page.click("#confirm-yes")
    await expect(row).to_have_count(0)
    await expect(page.locator("#dead-empty")).to_be_visible()
    [goal] = await raw.stats(key, goal="charge-card")
    assert (goal["ready"], goal["dead"]) == (1, 0)
    await page.screenshot(path=screenshot_path("dashboard-retried"), full_page=True)


async def test_cancel_asks_first_and_keeps_them_when_told_no(
    browser: Browser, bus: BusProcess, raw: RawBus
) -> None:
    key, _ = await raw.new_key("cancelling")
    ids = [await raw.dead_letter(key, "send-mail", {"n": n}) for n in range(3)]
    page = await _open(browser, bus)
    await _log_in(page, bus.admin_secret)
    await expect(page.locator("#dead tbody tr")).to_have_count(3)
    await page.check("#dead-all")
    await page.click("#cancel-selected")
    await expect(page.locator("#confirm-text")).to_have_text(
        "Cancel these 3 dead letters? They are kept as cancelled and never delivered."
    )
    await page.screenshot(path=screenshot_path("dashboard-confirm"), full_page=True)
    await page.click("#confirm button[value=no]")
    await expect(page.locator("#confirm")).to_be_hidden()
    for intent_id in ids:
        assert (await raw.status(key, intent_id)).body["status"] == "dead"
    await page.click("#cancel-selected")
    await page.click("#confirm-yes")
    await expect(page.locator("#dead tbody tr")).to_have_count(0)
    for intent_id in ids:
        assert (await raw.status(key, intent_id)).body["status"] == "cancelled"


async def test_a_hostile_payload_and_error_render_as_text(
    browser: Browser, bus: BusProcess, raw: RawBus
) -> None:
    hostile = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"
    key, _ = await raw.new_key("hostile")
    intent_id = await raw.publish(
        key, {"goal": "evil<b>goal</b>", "payload": {"html": hostile}, "max_attempts": 1}
    )
    claimed = await raw.claim(key, goal="evil<b>goal</b>")
    assert claimed is not None
    r = await raw.request(
        "POST",
        f"/fail/{intent_id}",
        key=key,
        doc={"error": hostile, "claim_token": claimed["claim_token"]},
    )
    assert r.status == 200, r
    page = await _open(browser, bus)
    await _log_in(page, bus.admin_secret)
    row = page.locator(f"#dead tr[data-id='{intent_id}']")
    await expect(row.locator("td.error-text")).to_have_text(hostile)
    await expect(row.locator("td.payload")).to_contain_text("<script>window.pwned=2</script>")
    await page.fill("#lookup-id", intent_id)
    await page.click("#lookup-form button")
    await expect(page.locator("#lookup-result")).to_contain_text("onerror=window.pwned=1")
    assert await page.evaluate("window.pwned") is None
    assert await page.locator("#board img, #board script, #board b").count() == 0
    await page.screenshot(path=screenshot_path("dashboard-hostile"), full_page=True)


async def test_dark_mode_on_a_phone(browser: Browser, bus: BusProcess, raw: RawBus) -> None:
    key, _ = await raw.new_key("phone")
    await raw.publish(key, {"goal": "a-rather-long-goal-name-on-a-small-screen", "payload": {}})
    page = await _open(browser, bus, color_scheme="dark", viewport={"width": 390, "height": 844})
    await _log_in(page, bus.admin_secret)
    await expect(page.locator("#goals tbody tr")).to_have_count(1)
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    # Nothing wider than the phone: wide tables scroll inside their cards.
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path=screenshot_path("dashboard-phone-dark"), full_page=True)
