"""The operator's fleet page against a real API server and a real bus: a worker that scales on
its backlog shows on the page, in Chromium, with its figures, its chart and the decision."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from playwright.async_api import expect

from tests.e2e import test_operator as operator_e2e
from tests.e2e.test_operator import intent_worker, publish, secret
from tests.support.browser import chromium, screenshot_path
from tests.support.busproc import BusProcess
from tests.support.cluster import Cluster, wait_until
from tests.support.operatorproc import OperatorProcess

operator = operator_e2e.operator


def fleet(operator: OperatorProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{operator.listen}/fleet.json", timeout=5) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
        return doc


async def _look(url: str, namespace: str) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 800})
        await page.goto(url)
        card = page.locator(f"section[data-worker='{namespace}/resize']")
        await expect(card.locator(".goal")).to_have_text("goal e2e.resize")
        await expect(card.locator(".backlog")).to_have_text("25")
        await expect(card.locator(".desired")).to_have_text("3")
        await expect(card.locator(".events li").first).to_contain_text("0 → 3")
        await expect(page.locator("#state")).to_contain_text("leader")
        await page.screenshot(path=screenshot_path("operator-fleet"), full_page=True)


def test_the_fleet_page_shows_a_worker_scaling_on_its_backlog(
    crd: Cluster, namespace: str, operator: OperatorProcess, bus: BusProcess, api_key: str
) -> None:
    secret(crd, namespace, api_key)
    crd.apply(intent_worker("resize", namespace, bus.url))
    asyncio.run(publish(bus.url, api_key, 25))

    def scaled() -> dict[str, Any] | None:
        for w in fleet(operator)["workers"]:
            if w["name"] == "resize" and w["namespace"] == namespace and w["events"]:
                return w if w["backlog"] == 25 and w["desired"] == 3 else None
        return None

    seen = wait_until(scaled, 30, "the worker scaled to 3 on the fleet page's data")
    assert seen["goal"] == "e2e.resize"
    assert seen["events"][0]["from"] == 0 and seen["events"][0]["to"] == 3
    assert "backlog" in seen["events"][0]["reason"]
    assert seen["points"] and seen["points"][-1][1] == 25
    assert {c["type"] for c in seen["conditions"]} >= {"Ready"}
    asyncio.run(_look(f"http://{operator.listen}/", namespace))

    crd.kubectl("delete", "intentworker", "resize", "-n", namespace)
    wait_until(
        lambda: not any(w["namespace"] == namespace for w in fleet(operator)["workers"]),
        30,
        "the deleted worker to leave the page",
    )
