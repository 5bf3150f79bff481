"""The operator dashboard in a real headless browser (Chromium through Playwright), against a running
local network: every node's page loads, its charts draw data, an operator action works, and the
browser logs no error.

Needs Debian's ``chromium`` (``make test`` installs it when apt-get is there) or any Chromium named by
``COCOON_CHROMIUM``; without one the test is skipped, saying so. Set ``COCOON_DASHBOARD_SCREENSHOT``
to a PNG path to also save the proxy's page (how ``docs/dashboard.png`` was made).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

MODEL = "scripted-model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WAIT_MS = 15_000


def _chromium() -> str | None:
    named = os.environ.get("COCOON_CHROMIUM")
    for name in (named, *BROWSERS):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    path = _chromium()
    if path is None:
        pytest.skip(
            "no Chromium found for the dashboard's browser test: apt-get install chromium "
            "(make test does it when apt-get is available) or set COCOON_CHROMIUM=/path/to/chrome"
        )
    return path


async def _traffic(base_url: str, stop: asyncio.Event) -> None:
    """A steady trickle of chat requests, so the rate charts have something to draw."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while not stop.is_set():
            (await http.post("/chat/completions", json=CHAT)).raise_for_status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    engines = [ScriptedEngine(Script(chunks=4, delay=0.005)) for _ in range(2)]
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=2)
    async with LocalNetwork(config, engine_factory=lambda i: engines[i]) as net:
        yield net


async def _wait(page: Any, script: str) -> None:
    """Until ``script`` is true on the page. (Playwright's ``wait_for_function`` evals its predicate,
    which the page's Content-Security-Policy forbids, as it should; ``evaluate`` goes through CDP.)"""
    async with asyncio.timeout(WAIT_MS / 1000):
        while not await page.evaluate(script):
            await page.wait_for_timeout(50)


def _points(chart: str, at_least: int) -> str:
    return f"(document.querySelector('#chart-{chart} svg')?.dataset.points|0) >= {at_least}"


async def test_every_node_page_loads_draws_charts_and_acts_without_console_errors(
    network: LocalNetwork, chromium: str, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    assert network.proxy is not None and network.client is not None
    proxy_url = f"http://127.0.0.1:{network.proxy.stats_port}/"  # "/" leads to /dashboard/
    worker_url = network.workers[0].health_url + "/dashboard/"
    client_url = f"http://127.0.0.1:{network.client.http_port}/dashboard/"
    stop = asyncio.Event()
    traffic = asyncio.create_task(_traffic(network.base_url, stop))
    errors: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            context.on(
                "console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None
            )
            pages = {}
            for name, url in (("proxy", proxy_url), ("worker", worker_url), ("client", client_url)):
                page = pages[name] = await context.new_page()
                page.on("pageerror", lambda exc, name=name: errors.append(f"{name}: {exc}"))
                await page.goto(url + "?every=0.25")
            await asyncio.gather(*(_wait(p, "document.body.dataset.ready === '1'") for p in pages.values()))

            proxy, worker, client = pages["proxy"], pages["worker"], pages["client"]
            assert await proxy.title() == "cocoon proxy — cocoon proxy"
            # Charts with history: two samples of the gauges, a rate from two samples of counters.
            await _wait(proxy, _points("load", 4))
            await _wait(proxy, _points("requests", 4))
            await _wait(proxy, "document.querySelectorAll('#chart-requests polyline').length >= 1")
            await _wait(worker, _points("load", 4))
            await _wait(worker, _points("tokens", 1))
            await _wait(client, _points("spend", 2))
            assert await proxy.locator("#table-workers tbody tr").count() == 2
            assert await worker.locator("#table-proxies tbody tr").count() == 1
            await _wait(client, "document.querySelectorAll('#table-receipts tbody tr').length >= 1")
            # Hashes whole, times as dates.
            image_hash = network.proxy.trust.image_hash.hex()  # type: ignore[union-attr]
            assert image_hash in await proxy.locator("#facts").inner_text()
            valid_until = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in \d+ h\)"  # in ~24 h
            assert re.search(valid_until, await worker.locator("#facts").inner_text())

            # Read-only without the token; with it, disabling a worker takes it out of rotation.
            worker_id = network.proxy.registry.records()[0].worker_id
            button = proxy.locator(f'tr[data-key="{worker_id}"] button[data-action="disable"]')
            assert await button.is_disabled()
            token = (network.config.home / "proxy" / "operator.token").read_text().strip()
            await proxy.fill("#token", token)
            proxy.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await button.click()
            await _wait(proxy, "document.getElementById('result').textContent.includes('disabled')")
            views = {v.record.worker_id: v for v in network.proxy.registry.statistics(0).per_worker}
            assert views[worker_id].enabled is False
            await _wait(
                proxy,
                f'!!document.querySelector(\'tr[data-key="{worker_id}"] button[data-action="enable"]\')',
            )

            shot = os.environ.get("COCOON_DASHBOARD_SCREENSHOT")
            if shot:
                await proxy.screenshot(path=shot, full_page=True)
            await browser.close()
    finally:
        stop.set()
        await traffic
    assert errors == []
