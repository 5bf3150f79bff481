"""Each node's page, from its statistics document (pure functions; no node, no browser)."""

from __future__ import annotations

from typing import Any

from cocoon.client.dashboard import client_snapshot
from cocoon.node.dashboard import Snapshot, Table
from cocoon.proxy.dashboard import proxy_snapshot
from cocoon.worker.dashboard import worker_snapshot


def _table(snapshot: Snapshot, table_id: str) -> Table:
    return next(t for t in snapshot.tables if t.id == table_id)


def _worker(worker_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "worker_id": worker_id,
        "model": "m",
        "enabled": True,
        "attested": True,
        "suspended": False,
    } | fields


def test_proxy_page_states_each_worker_and_offers_the_matching_action() -> None:
    stats = {
        "state": "running",
        "requests": {"requests": 5, "succeeded": 4, "failed": 1},
        "billing": {"revenue_nano": 2_000, "seqno": 7, "last_committed_seqno": 6, "session_hash": "ab" * 32},
        "workers": {
            "count": 4,
            "latency": {"ttft_s": {"p50": 0.01}},
            "list": [
                _worker("a"),
                _worker("b", enabled=False),
                _worker("c", suspended=True, suspended_until=1e9, suspensions=3),
                _worker("d", attested=False),
            ],
        },
        "chain": {"root": "0:" + "1" * 64, "errors": 2, "last_error": "LiteError: timeout"},
    }
    page = proxy_snapshot(stats)
    workers = _table(page, "workers")
    states = {row.key: row.cells[2].value for row in workers.rows}
    assert states == {"a": "serving", "b": "disabled", "c": "suspended", "d": "attestation stale"}
    assert {row.key: row.actions for row in workers.rows}["b"] == ("enable",)
    assert workers.rows[0].actions == ("disable",)
    assert workers.rows[2].cells[workers.columns.index("suspensions")].value == 3
    chain = {row.cells[0].value: row.cells[1] for row in _table(page, "chain").rows}
    assert chain["sync errors"].value == 2 and chain["last error"].kind == "bad"
    assert chain["session hash"].value == "ab" * 32
    assert page.metrics["requests.succeeded"] == 4 and page.metrics["ttft.p50"] == 0.01


def test_proxy_page_without_a_chain_says_there_is_no_settlement() -> None:
    chain = _table(proxy_snapshot({}), "chain")
    assert any("no settlement" in str(row.cells[1].value) for row in chain.rows)


def test_worker_page_sums_earnings_and_gpus() -> None:
    health = {
        "state": "running",
        "accepting_requests": False,
        "served": 3,
        "payments": {"p:1": {"earned_nano": 5, "paid_nano": 1}, "p:2": {"earned_nano": 7, "paid_nano": 0}},
        "gpu_telemetry": {
            "gpus": [
                {
                    "utilization_pct": 40.0,
                    "memory_used_bytes": 1,
                    "memory_total_bytes": 4,
                    "power_w": 100.0,
                    "temperature_c": 50.0,
                },
                {
                    "utilization_pct": 80.0,
                    "memory_used_bytes": 1,
                    "memory_total_bytes": 4,
                    "power_w": 200.0,
                    "temperature_c": 70.0,
                },
            ]
        },
        "proxies": [{"address": "p:1", "connected": True}],
    }
    page = worker_snapshot(health, ["line"])
    assert page.metrics["earned_nano"] == 12 and page.metrics["paid_nano"] == 1
    assert page.metrics["gpu.utilization_pct"] == 60.0 and page.metrics["gpu.memory_pct"] == 25.0
    assert page.metrics["gpu.power_w"] == 300.0 and page.metrics["gpu.temperature_c"] == 70.0
    facts = dict(page.facts)
    assert facts["accepting requests"].value == "no (draining)"
    assert _table(page, "logs").rows[0].cells[0].value == "line"


def test_client_page_lists_the_newest_receipt_first() -> None:
    receipts = [{"time": 1.0, "cost_nano": 1}, {"time": 2.0, "cost_nano": 2}]
    page = client_snapshot({"state": "running", "spent_nano": 3, "budget_left_nano": None}, receipts)
    assert [row.cells[0].value for row in _table(page, "receipts").rows] == [2.0, 1.0]
    assert dict(page.facts)["daily budget left"].value == "no limit"
