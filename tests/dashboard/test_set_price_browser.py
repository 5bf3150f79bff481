"""The worker dashboard's *set price* in a real browser: the page asks for the coefficient, the
worker takes it live and its proxy prices the next requests with it; a bad answer is refused on the
page and changes nothing. Skipped, saying why, where no Chromium can run (as the other browser test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from tests.dashboard.test_browser import _wait, chromium  # chromium: the fixture, shared

__all__ = ["chromium"]


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=1))) as net:
        yield net


async def test_set_price_asks_for_the_coefficient_and_reaches_the_proxy(
    network: LocalNetwork,
    chromium: str,
) -> None:
    from playwright.async_api import async_playwright

    assert network.proxy is not None
    (worker,) = network.workers
    answers = iter(["1250", "cheap"])
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept(next(answers))))
        await page.goto(worker.health_url + "/dashboard/?every=0.25")
        await _wait(page, "document.body.dataset.ready === '1'")
        await page.fill("#token", (worker.config.home / "operator.token").read_text().strip())
        button = page.locator('button[data-action="set-price"]')
        await button.click()
        await _wait(page, "document.getElementById('result').textContent.includes('1.250x')")
        (record,) = network.proxy.registry.records()
        async with asyncio.timeout(10):
            while record.coefficient != 1250:
                await asyncio.sleep(0.02)
                (record,) = network.proxy.registry.records()
        await button.click()  # "cheap": refused on the page, nothing changes
        await _wait(page, "document.getElementById('result').className.includes('failed')")
        assert "per mille" in await page.locator("#result").inner_text()
        await browser.close()
    assert worker.config.coefficient == 1250 and not errors
