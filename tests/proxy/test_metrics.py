"""Operator view: Prometheus text from ledger + registry snapshots, and the /stats JSON document."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cocoon.proxy.metrics import RequestMetrics, build_registry, stats_json
from cocoon.proxy.selection import WorkerRecord, WorkerRegistry

from .helpers import charge_of, funded_ledger


def _workers() -> WorkerRegistry:
    reg = WorkerRegistry()
    reg.add(WorkerRecord("w1", "m@1", 1000, 4, gpu_class="H100", region="eu"))
    reg.add(WorkerRecord("w2", "m@1", 1500, 2))
    reg.add(WorkerRecord("w3", "other", 1000, 1))
    for i, ttft in enumerate([0.03, 0.2, 0.7, 3.0]):
        reg.started("w1", float(i))
        reg.first_byte("w1", ttft)
        reg.finished("w1", True, 100, ttft + 1.0, float(i) + 2.0)
    reg.started("w2", 5.0)
    reg.finished("w2", True, 10, 1.0, 6.0)
    reg.usage_mismatch("w2", 6.0)
    reg.started("w1", 7.0)  # one still running
    return reg


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_metrics_from_snapshots(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    ledger.reserve("r1", "alice", 10**7, 1.0)
    ledger.settle("r1", "w1", charge_of(100, 200), 2.0)
    ledger.reserve("r2", "alice", 10**7, 3.0)
    workers = _workers()
    registry = build_registry(ledger.statistics, lambda: workers.statistics(10.0))
    live = RequestMetrics(registry)
    live.requests.labels(outcome="ok").inc()
    live.retries.inc()
    live.overhead.observe(0.002)
    s = _samples(generate_latest(registry).decode())
    assert s[("cocoon_proxy_workers", ())] == 3
    assert s[("cocoon_proxy_workers_by_model", (("model", "m"),))] == 2
    assert s[("cocoon_proxy_running_requests", ())] == 1
    assert s[("cocoon_proxy_suspended_workers", ())] == 1
    assert s[("cocoon_proxy_worker_requests_total", (("outcome", "ok"),))] == 5
    assert s[("cocoon_proxy_usage_mismatches_total", ())] == 1
    assert s[("cocoon_proxy_ttft_seconds_count", ())] == 4
    assert s[("cocoon_proxy_ttft_seconds_bucket", (("le", "0.05"),))] == 1
    assert s[("cocoon_proxy_ttft_seconds_bucket", (("le", "1.0"),))] == 3
    assert s[("cocoon_proxy_ttft_seconds_bucket", (("le", "+Inf"),))] == 4
    assert s[("cocoon_proxy_recent_latency_seconds", (("kind", "ttft"), ("quantile", "50")))] == 0.2
    assert s[("cocoon_proxy_worker_suspended", (("worker", "w2"),))] == 1
    charge = charge_of(100, 200)
    assert s[("cocoon_proxy_revenue_nanoton_total", ())] == charge.client_cost_nano
    assert s[("cocoon_proxy_fees_nanoton_total", ())] == charge.proxy_fee_nano
    assert s[("cocoon_proxy_reserved_nanoton", ())] == 10**7
    assert s[("cocoon_proxy_ledger_requests", (("state", "settled"),))] == 1
    assert s[("cocoon_proxy_requests_total", (("outcome", "ok"),))] == 1
    assert s[("cocoon_proxy_retries_total", ())] == 1
    # Scrapes read fresh snapshots: new settlements show up without re-registering anything.
    ledger.settle("r2", "w1", charge, 4.0)
    s = _samples(generate_latest(registry).decode())
    assert s[("cocoon_proxy_revenue_nanoton_total", ())] == 2 * charge.client_cost_nano
    ledger.close()


def test_registries_are_independent() -> None:
    a, b = build_registry(), build_registry()
    RequestMetrics(a)
    RequestMetrics(b)  # no duplicate-registration error: nothing is global


def test_stats_json_is_plain_json(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    ledger.reserve("r1", "alice", 10**7, 1.0)
    ledger.settle("r1", "w1", charge_of(10, 20), 2.0)
    workers = _workers()
    doc = stats_json(
        ledger.statistics(),
        workers.statistics(10.0),
        clients=ledger.clients(),
        worker_totals=ledger.workers(),
    )
    text = json.dumps(doc, allow_nan=False)  # no inf / NaN anywhere
    back = json.loads(text)
    assert back["billing"]["requests_settled"] == 1
    assert back["workers"]["count"] == 3
    assert back["workers"]["latency"]["ttft_s"]["p50"] == 0.2
    ids = [w["worker_id"] for w in back["workers"]["list"]]
    assert ids == ["w1", "w2", "w3"]
    w2 = back["workers"]["list"][1]
    assert w2["suspended"] is True and w2["usage_mismatches"] == 1
    assert back["clients"][0]["client"] == "alice"
    assert back["earnings"][0]["worker"] == "w1"
    assert stats_json(None, None) == {}
    ledger.close()
