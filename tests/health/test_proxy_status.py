"""``cocoon proxy status``: a table of the connected workers, and request counters named once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_proxy_status_lists_each_worker(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=2)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        async with httpx.AsyncClient(base_url=net.base_url, timeout=30) as http:
            (await http.post("/chat/completions", json=CHAT)).raise_for_status()
        url = f"http://127.0.0.1:{net.proxy.stats_port}"
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["proxy", "status", "--url", url], terminal_width=250
        )
        assert result.exit_code == 0, result.output
        text = "".join(ch for ch in result.output if ch not in "│ \n")
        assert "requestsrequests" not in text
        assert text.count("serving") == 2 and "susp." in text and "attestedago" in text
        ids = [r.worker_id for r in net.proxy.registry.records()]
        lines = result.output.splitlines()
        for index, worker_id in enumerate(ids):  # each id whole on one line, with its ISO time
            line = next(line for line in lines if line.startswith(f"#{index} "))
            assert worker_id in line and "UTC (" in line and "ago)" in line
        assert net.proxy.statistics()["image_hash"] in result.output


async def test_proxy_status_ids_stay_whole_at_80_columns(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        url = f"http://127.0.0.1:{net.proxy.stats_port}"
        result = await asyncio.to_thread(CliRunner().invoke, app, ["proxy", "status", "--url", url])
        assert result.exit_code == 0, result.output
        (record,) = net.proxy.registry.records()
        assert record.worker_id in result.output and "…" not in result.output
