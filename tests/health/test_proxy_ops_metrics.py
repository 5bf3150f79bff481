"""The proxy's /metrics extras: settlement loop progress and errors, process health."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cocoon.inference import Script, ScriptedEngine
from cocoon.localnet.network import LocalNetwork, LocalNetworkConfig
from cocoon.proxy.chain_sync import SyncStats
from cocoon.proxy.ops_metrics import register_ops_metrics


def _samples(stats: SyncStats | None) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    register_ops_metrics(registry, lambda: stats, lambda: 42.0)
    text = generate_latest(registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_chain_sync_errors_and_progress_are_counters() -> None:
    samples = _samples(SyncStats(ticks=9, errors=2, commits_posted=3, charges_posted=1))
    assert samples["cocoon_proxy_chain_sync_errors_total"] == 2
    assert samples["cocoon_proxy_chain_sync_ticks_total"] == 9
    assert samples["cocoon_proxy_chain_sync_commits_posted_total"] == 3
    assert samples["cocoon_uptime_seconds"] == 42.0
    assert samples["process_open_fds"] > 0 and samples["process_resident_memory_bytes"] > 0


def test_without_a_chain_there_is_no_settlement_metric() -> None:
    assert not any(name.startswith("cocoon_proxy_chain_sync") for name in _samples(None))


async def test_rejections_are_counted_by_reason_on_a_live_proxy(tmp_path: Path) -> None:
    config = LocalNetworkConfig.ephemeral(tmp_path, workers=1)
    async with LocalNetwork(config, engine_factory=lambda i: ScriptedEngine(Script(chunks=2))) as net:
        assert net.proxy is not None
        async with httpx.AsyncClient(timeout=30) as http:
            # No worker is this cheap: the proxy refuses before asking one.
            chat = {
                "model": "scripted-model",
                "messages": [{"role": "user", "content": "hi"}],
                "max_coefficient": 1,
            }
            answer = await http.post(net.base_url + "/chat/completions", json=chat)
            assert answer.status_code >= 400
            reason = answer.json()["error"]["code"]
            text = (await http.get(f"http://127.0.0.1:{net.proxy.stats_port}/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("cocoon_proxy_rejections_total", (("reason", reason),))] == 1
    assert ("process_open_fds", ()) in samples
