"""The proxy's /metrics extras: settlement loop progress and errors, process health."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

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
