"""A worker on a chain knows when its next payout comes: the proxy's payment notices carry the
payout thresholds, `GET /health` adds the estimate, and `cocoon health earnings` and the worker's
dashboard show it ("after about N more adjusted tokens")."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.config import ProxyChainSettings
from cocoon.worker.dashboard import worker_snapshot

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
THRESHOLD = ProxyChainSettings.model_fields["min_worker_payout_nano"].default


async def test_earnings_carry_the_threshold_and_an_estimate(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1, chain=True)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=3))) as net:
        (worker,) = net.workers
        async with httpx.AsyncClient(base_url=net.base_url, timeout=30) as http:
            for _ in range(2):
                (await http.post("/chat/completions", json=CHAT)).raise_for_status()
        async with asyncio.timeout(20):
            while not worker.payments:  # noqa: ASYNC110 - the notice arrives on the proxy link
                await asyncio.sleep(0.02)
        (payment,) = worker.statistics()["payments"].values()
        estimate = payment["next_payout"]
        fee = payment["worker_fee_per_token"]
        unpaid = payment["earned_nano"] - payment["paid_nano"]
        assert estimate["threshold_nano"] == THRESHOLD and estimate["unpaid_nano"] == unpaid > 0
        assert estimate["tokens_to_payout"] == -(-(THRESHOLD - unpaid) // fee)
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["health", "earnings", "--url", worker.health_url], terminal_width=200
        )
        assert result.exit_code == 0, result.output
        text = " ".join(result.output.split())  # (a later bill may have moved the number since)
        assert re.search(r"next payout from \S+: after about [\d,]+ more adjusted tokens \(at 10 TON", text)
        assert payment["worker_contract"] in result.output  # whole, on its own line
        page = worker_snapshot(worker.statistics(), [])
        proxies = next(t for t in page.tables if t.id == "proxies")
        column = proxies.columns.index("next payout")
        assert "more adjusted tokens" in str(proxies.rows[0].cells[column].value)
