"""The shipped Grafana dashboard queries only metrics the nodes really expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.chain_sync import SyncStats
from cocoon.proxy.ops_metrics import register_ops_metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "cocoon.json"
CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


def _names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _queried() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 30
    return {m for e in exprs for m in re.findall(r"\b(?:cocoon|process)_[a-z_]+\b", e)}


async def test_every_metric_the_dashboard_queries_is_exposed(tmp_path: Path) -> None:
    exposed: set[str] = set()
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        async with httpx.AsyncClient(timeout=30) as http:
            (await http.post(net.base_url + "/chat/completions", json=CHAT)).raise_for_status()
            for url in (f"http://127.0.0.1:{net.proxy.stats_port}", net.workers[0].health_url):
                exposed |= _names((await http.get(url + "/metrics")).raise_for_status().text)
    # The settlement metrics exist only on a chain: take them from the collector itself.
    registry = CollectorRegistry(auto_describe=False)
    register_ops_metrics(registry, lambda: SyncStats(), lambda: 0.0)
    exposed |= _names(generate_latest(registry).decode())
    # GPU metrics exist only where NVML finds GPUs: their names are checked in tests/health.
    queried = {m for m in _queried() if not m.startswith("cocoon_worker_gpu_")}
    assert queried - exposed == set()
