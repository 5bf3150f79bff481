"""Reputation that lasts and can be checked: a worker's record and suspension survive a proxy restart,
and clients read per-worker statistics signed by the proxy's attested key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.inference import Usage
from cocoon.node.trustdocs import EVIDENCE, WORKER_STATS, DocumentError, verify_document
from cocoon.proxy import Proxy
from cocoon.proxy.config import IntegritySettings
from cocoon.proxy.dashboard import proxy_snapshot
from cocoon.proxy.ledger import BillingLedger
from cocoon.proxy.reputation import ReputationBook, TrackedRegistry
from cocoon.proxy.selection import WorkerRecord
from tests.proxy.netkit import MODEL, network
from tests.proxy.trustkit import model_engine

MANUAL = IntegritySettings(spot_check_every_requests=0)


def _record(worker_id: str = "w1", at: float = 1000.0) -> WorkerRecord:
    return WorkerRecord(worker_id, "m@x", 1000, 4, model_hash="ab" * 32, attested_at=at, connected_at=at)


def test_export_and_restore_keep_counts_latencies_uptime_and_a_suspension() -> None:
    registry = TrackedRegistry(ReputationBook(), clock=lambda: 1100.0)
    registry.add(_record())
    for i in range(10):
        registry.started("w1", 1000.0 + i)
        registry.first_byte("w1", 0.1 * (i + 1))
        registry.finished("w1", ok=i != 3, tokens=5, duration=1.0 + i, now=1001.0 + i)
    registry.spot_check_failed("w1", 1050.0)
    registry.remove("w1")  # connected from 1000 to 1100
    saved = json.loads(json.dumps(registry.book.export(registry, 1200.0)))  # through the store's JSON

    restored = TrackedRegistry(ReputationBook())
    assert restored.book.restore(restored, saved) == 1
    assert restored.is_suspended("w1", 1055.0) and not restored.is_suspended("w1", 5000.0)
    stats = restored.stats("w1", 1055.0)
    assert (stats.total_ok, stats.total_failed, stats.suspensions) == (9, 2, 1)
    body = restored.book.stats_body(restored, 1200.0)
    (worker,) = body["workers"]
    assert worker["requests_ok"] == 9 and worker["success_permille"] == 818
    assert worker["ttft_ms"] == {"p50": 500, "p90": 900, "p99": 1000}
    assert worker["uptime_permille"] == 500 and worker["observed_s"] == 200  # 100 s of 200 s connected
    assert worker["connected"] is False and worker["model_hash"] == "ab" * 32


def test_a_malformed_stored_record_is_skipped_and_changes_nothing() -> None:
    registry = TrackedRegistry(ReputationBook())
    bad = {
        "w1": {"registry": {"ok": "lots"}, "book": {"first_seen": -1}},
        "w2": {"registry": None, "book": None},
    }
    assert registry.book.restore(registry, bad) == 0
    assert registry.export_reputation() == {} and registry.book.get("w1") is None


async def test_a_restart_keeps_a_lying_workers_record_evidence_and_suspension(tmp_path: Path) -> None:
    liar = model_engine("big", claim=Usage(prompt_tokens=20, completion_tokens=5000))  # over max_tokens
    async with network(tmp_path, [liar], integrity=MANUAL) as n:
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
        out = await n.link.open_stream(
            endpoint="/v1/chat/completions",
            model=MODEL,
            body=body.encode(),
            max_coefficient=1000,
            max_tokens=50,
            timeout=30,
            request_id=secrets.token_bytes(32),
            meta={},
        )
        [event async for event in out]
        (record,) = n.proxy.registry.records()
        worker_id = record.worker_id
        async with asyncio.timeout(10):
            while not await n.proxy.books.misbehaviour():  # type: ignore[union-attr]  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the evidence is written off the answer's path
        assert n.proxy.registry.is_suspended(worker_id, n.proxy.integrity.spot._clock())
        proxy_key = n.proxy.trust.identity.public_key  # type: ignore[union-attr]
        config = n.proxy.config
    # The proxy is stopped; a new process on the same home knows the worker before it reconnects.
    proxy = Proxy(config)
    await proxy.start()
    try:
        assert proxy.registry.records() == []
        assert proxy.registry.is_suspended(worker_id, proxy.integrity.spot._clock())
        stats = proxy.registry.stats(worker_id)
        assert stats.usage_mismatches == 1 and stats.suspensions == 1
        (evidence,) = await proxy.books.misbehaviour(worker_id=worker_id)  # type: ignore[union-attr]
        assert evidence.kind == "usage_over_bound"
        facts = verify_document(evidence.document, proxy_key=proxy_key, kind=EVIDENCE)["facts"]
        assert facts["claimed"]["completion"] == 5000 and facts["billed"]["completion"] == 50
        signed = verify_document(evidence.document, proxy_key=proxy_key, kind=EVIDENCE)["worker_receipt"]
        assert signed["body"]["usage"]["completion_tokens"] == 5000  # the worker signed the lie itself
        assert signed["body"]["response_sha256"] == facts["relayed_sha256"]
        (published,) = proxy.integrity.stats()["body"]["workers"]
        assert published["worker_id"] == worker_id and published["usage_mismatches"] == 1
        assert published["suspended_until"] is not None and published["evidence"] == 1
    finally:
        await proxy.stop()


async def test_clients_read_the_statistics_signed_by_the_proxys_attested_key(tmp_path: Path) -> None:
    async with network(tmp_path, [model_engine("big"), model_engine("big")], integrity=MANUAL) as n:
        (model_hash,) = {r.model_hash for r in n.proxy.registry.records()}
        await n.proxy.integrity.spot.check(model_hash)
        async with httpx.AsyncClient() as http:
            answer = (await http.get(f"http://127.0.0.1:{n.client.http_port}/cocoon/v1/workers")).json()
        assert answer["verified"] is True
        assert answer["proxy_key"] == n.proxy.trust.identity.public_key.hex()  # type: ignore[union-attr]
        workers = {w["worker_id"]: w for w in answer["workers"]}
        assert set(workers) == {r.worker_id for r in n.proxy.registry.records()}
        assert all(w["spot_checks"]["passed"] == 1 and w["connected"] for w in workers.values())
        # The operator sees the same record on the dashboard (from /stats).
        stats = n.proxy.statistics()
        assert stats["reputation"]["spot_check_rounds"] == 1 and stats["reputation"]["canaries_sent"] == 2
        (table,) = [t for t in proxy_snapshot(stats).tables if t.id == "reputation"]
        assert {row.key for row in table.rows} == set(workers)
        # A document altered after signing, or signed by another key, is refused.
        signed = n.proxy.integrity.stats()
        verify_document(signed, proxy_key=n.proxy.trust.identity.public_key, kind=WORKER_STATS)  # type: ignore[union-attr]
        signed["body"]["workers"][0]["requests_failed"] = 0
        signed["body"]["workers"][0]["spot_checks"] = {"passed": 99, "failed": 0}
        with pytest.raises(DocumentError):
            verify_document(signed, proxy_key=n.proxy.trust.identity.public_key, kind=WORKER_STATS)  # type: ignore[union-attr]
        with pytest.raises(DocumentError):
            verify_document(signed, proxy_key=hashlib.sha256(b"x").digest(), kind=WORKER_STATS)


def test_a_version_2_store_gains_the_trust_tables_and_keeps_its_books(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with BillingLedger(path) as ledger:
        ledger.ensure_client("app", credit=1000, now=1.0)
    db = sqlite3.connect(path)
    for table in ("worker_reputation", "misbehaviour", "reputation_anchors"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    with BillingLedger(path) as ledger:  # upgraded in place
        assert ledger.client_totals("app").available_nano == 1000
        ledger.save_reputation({"w": {"registry": None, "book": None}}, 2.0)
        assert ledger.reputation() == {"w": {"registry": None, "book": None}}


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(("add", "remove", "ok", "fail", "byte", "mismatch", "spot_ok", "spot_fail", "wait")),
        st.sampled_from(("w1", "w2", "w3")),
        st.floats(0.0, 100.0, allow_nan=False),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(events=EVENTS)
def test_any_history_restores_to_the_same_published_statistics(events: list[tuple[str, str, float]]) -> None:
    now = [1000.0]
    registry = TrackedRegistry(ReputationBook(), clock=lambda: now[0])
    for kind, worker, x in events:
        if kind == "wait":
            now[0] += x
        elif kind == "add":
            registry.add(_record(worker, at=now[0]))
        elif registry.get(worker) is None:
            continue
        elif kind == "remove":
            registry.remove(worker)
        elif kind in ("ok", "fail"):
            registry.started(worker, now[0])
            registry.finished(worker, ok=kind == "ok", tokens=3, duration=x + 0.01, now=now[0])
        elif kind == "byte":
            registry.first_byte(worker, x)
        elif kind == "mismatch":
            registry.usage_mismatch(worker, now[0])
        else:
            registry.book.spot_check(worker, kind == "spot_ok", now[0])
            if kind == "spot_fail":
                registry.spot_check_failed(worker, now[0])
    for record in registry.records():
        registry.remove(record.worker_id)  # what a stop does: every connection closed, then saved
    saved = json.loads(json.dumps(registry.book.export(registry, now[0])))
    restored = TrackedRegistry(ReputationBook())
    restored.book.restore(restored, saved)
    later = now[0] + 5.0
    assert restored.book.stats_body(restored, later) == registry.book.stats_body(registry, later)
    for worker in registry.export_reputation():
        assert restored.is_suspended(worker, later) == registry.is_suspended(worker, later)
