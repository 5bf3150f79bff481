"""``cocoon health`` against a running worker: log lines without ``-v``, dates, whole hashes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from cocoon.cli.main import app
from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig


async def test_health_views_of_a_running_worker(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        worker = net.workers[0]

        def health(view: str) -> str:
            result = CliRunner().invoke(app, ["health", view, "--url", worker.health_url], terminal_width=200)
            assert result.exit_code == 0, result.output
            return result.output

        logs = (await asyncio.to_thread(health, "logs")).replace("\n", "")  # long lines wrap
        assert "serving scripted-model to 1 proxies" in logs  # no -v needed
        image = net.image_hash("proxy")
        assert image is not None and image.hex() in logs  # the proxy's image, whole
        tdx = await asyncio.to_thread(health, "tdx")
        folded = "".join(ch for ch in tdx if ch not in "│ \n")  # an 80-column console folds long cells
        assert worker.model_hash is not None and worker.model_hash.hex() in folded
        assert "UTC (in 23 h" in tdx or "UTC (in 24 h" in tdx
        gpu = await asyncio.to_thread(health, "gpu")
        assert "no GPU" in gpu or "NVIDIA" in gpu
