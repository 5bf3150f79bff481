"""The request history is pruned after its retention; money, counters and evidence never depend on it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import LedgerInputError
from cocoon.proxy.ledger import AsyncLedger, BillingLedger, RequestState
from cocoon.proxy.ledger.history import PRUNE_BATCH, PruneBatch
from cocoon.proxy.ledger.schema import SCHEMA_VERSION
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import TokenCounts, price
from cocoon.proxy.retention import prune_loop, prune_once

from .helpers import PARAMS, TON, charge_of, funded_ledger

DAY = 86400.0


def _money(ledger: BillingLedger) -> dict[str, list[tuple[object, ...]]]:
    """Every table that holds money or its anchoring: what pruning must never touch."""
    rows = ledger._debug_rows()
    return {table: rows[table] for table in ("clients", "workers", "snapshots", "capped_answers")}


def _counts(ledger: BillingLedger) -> tuple[int, int, int, int]:
    s = ledger.statistics()
    return s.requests_reserved, s.requests_settled, s.requests_failed, s.requests_pruned


def _capped_settle(ledger: BillingLedger, request_id: str, now: float) -> None:
    tally = RelayTally()
    tally.feed(b'data: {"choices":[{"delta":{"content":"short"}}]}\n\ndata: [DONE]\n\n')
    tally.finish()
    audit = UsageAudit().check(TokenCounts(prompt=10, completion=5000), tally, request_bytes=100)
    assert audit.over_reported
    ledger.settle(
        request_id, "w1", price(audit.billable, 1000, PARAMS), now, usage=audit.billable, audit=audit
    )


def test_old_finished_requests_go_and_everything_else_stays(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    for i in range(6):  # day 1: settled, failed, capped (evidence), misbehaviour evidence, reserved
        ledger.reserve(f"old{i}", "alice", TON // 100, 1 * DAY)
    ledger.settle("old0", "w1", charge_of(10, 5), 1 * DAY)
    ledger.settle("old1", "w1", charge_of(3, 2), 1 * DAY)
    ledger.fail("old2", None, now=1 * DAY)
    _capped_settle(ledger, "old3", 1 * DAY)
    ledger.settle("old4", "w1", charge_of(1, 1), 1 * DAY)
    ledger.add_misbehaviour(
        evidence_id="e1", worker_id="w1", owner="w1", kind="spot_check", request_id="old4",
        document={"why": "test"}, slash_state="none", slash_amount=0, now=1 * DAY,
    )  # fmt: skip
    ledger.reserve("new0", "alice", TON // 100, 40 * DAY)
    ledger.settle("new0", "w1", charge_of(7, 7), 40 * DAY)
    money, counts = _money(ledger), _counts(ledger)
    assert counts == (1, 5, 1, 0)

    batch = ledger.prune_history(before=40 * DAY - 30 * DAY)
    assert (batch.deleted, batch.more) == (3, False)
    assert [ledger.request(f"old{i}") is None for i in range(6)] == [True, True, True, False, False, False]
    assert ledger.request("old5").state is RequestState.RESERVED  # funds held: never pruned
    assert ledger.request("new0") is not None
    assert _money(ledger) == money  # not one nanoTON, token or piece of evidence moved
    assert _counts(ledger) == (1, 5, 1, 3)  # the counters still count what was pruned
    assert ledger.prune_history(before=10 * DAY).deleted == 0  # a second pass finds nothing
    ledger.close()


def test_a_pruned_request_id_that_comes_back_is_a_new_request_billed_anew(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    ledger.reserve("r1", "alice", TON // 100, 1.0)
    ledger.settle("r1", "w1", charge_of(10, 5), 1.0)
    cost = ledger.client_totals("alice").cost_nano
    assert ledger.prune_history(before=2 * DAY).deleted == 1
    ledger.reserve("r1", "alice", TON // 100, 3 * DAY)
    ledger.settle("r1", "w1", charge_of(10, 5), 3 * DAY)
    assert ledger.client_totals("alice").cost_nano == 2 * cost
    assert _counts(ledger) == (0, 2, 0, 1)
    ledger.close()


def test_bad_prune_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    ledger.reserve("r1", "alice", TON // 100, 1.0)
    ledger.settle("r1", "w1", charge_of(1, 1), 1.0)
    before = ledger._debug_rows()
    for kwargs in ({"before": float("nan")}, {"before": -1.0}, {"before": DAY, "after_rowid": -1}):
        with pytest.raises(LedgerInputError):
            ledger.prune_history(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ledger.prune_history(before=DAY, limit=0)
    assert ledger._debug_rows() == before
    ledger.close()


async def test_a_pass_walks_the_history_in_batches(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice", balance=10_000 * TON, stake=10_000 * TON)
    n = 2 * PRUNE_BATCH + 7
    for i in range(n):
        ledger.reserve(f"r{i}", "alice", 1000, 1.0 + i)
        ledger.settle(f"r{i}", "w1", charge_of(1, 0), 1.0 + i)
    async with AsyncLedger(ledger) as books:
        keep = 5  # the newest few are inside the window
        assert await prune_once(books, before=1.0 + n - keep) == n - keep
        stats = await books.statistics()
        assert (stats.requests_settled, stats.requests_pruned) == (n, n - keep)
        assert books.groups >= 3  # one short transaction per batch, not one long one


async def test_the_proxy_loop_prunes_at_start_and_stops_when_cancelled(tmp_path: Path) -> None:
    ledger = funded_ledger(tmp_path / "b.db", "alice")
    ledger.reserve("r1", "alice", TON // 100, 1.0)
    ledger.settle("r1", "w1", charge_of(1, 1), 1.0)
    async with AsyncLedger(ledger) as books:
        assert await asyncio.wait_for(prune_loop(books, 0), 1) is None  # 0 days: keep forever, no task
        passed = asyncio.Event()
        prune = books.prune_history

        async def pruning(**kwargs: Any) -> PruneBatch:
            batch = await prune(**kwargs)
            passed.set()
            return batch

        books.prune_history = pruning  # type: ignore[method-assign]
        loop = asyncio.ensure_future(prune_loop(books, 30, every_s=3600, clock=lambda: 31 * DAY))
        await asyncio.wait_for(passed.wait(), 10)
        assert (await books.statistics()).requests_pruned == 1
        assert await books.request("r1") is None
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


def test_a_version_3_store_gets_its_counters_from_its_history(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    ledger = funded_ledger(path, "alice")
    for i in range(5):
        ledger.reserve(f"r{i}", "alice", TON // 100, 1.0)
    ledger.settle("r0", "w1", charge_of(1, 1), 2.0)
    ledger.settle("r1", "w1", charge_of(1, 1), 2.0)
    ledger.fail("r2", None, now=2.0)
    ledger.close()
    db = sqlite3.connect(path, isolation_level=None)  # the store as version 3 left it
    for column in ("settled_requests", "failed_requests", "pruned_requests"):
        db.execute(f"ALTER TABLE state DROP COLUMN {column}")
    db.execute("PRAGMA user_version=3")
    db.close()
    reopened = BillingLedger(path)
    assert _counts(reopened) == (2, 2, 1, 0)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    reopened.close()


def _ids(ledger: BillingLedger) -> set[str]:
    return {str(row[0]) for row in ledger._debug_rows()["requests"]}


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "settle", "fail", "prune"]), st.integers(0, 11), st.integers(0, 40)
    ),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_pruning_anywhere_in_a_history_changes_no_money_and_no_count(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    """The same history run twice, once with prunes interleaved: every account, and every count the
    operator sees, is the same at the end; only the rows of finished requests differ."""
    base = tmp_path_factory.mktemp("h")
    plain, pruned = funded_ledger(base / "a.db", "alice"), funded_ledger(base / "b.db", "alice")
    day = 0.0
    for op, n, k in ops:
        day += 1
        rid = f"r{n}"
        for ledger in (plain, pruned):
            record = ledger.request(rid)
            if op == "reserve" and record is None:
                ledger.reserve(rid, "alice", TON // 100, day * DAY)
            elif op == "settle" and record is not None and record.state is RequestState.RESERVED:
                ledger.settle(rid, f"w{k % 3}", charge_of(k, k), day * DAY)
            elif op == "fail" and record is not None and record.state is RequestState.RESERVED:
                ledger.fail(rid, charge_of(k, 0) if k % 2 else None, worker="w1", now=day * DAY)
            if op == "prune" and ledger is pruned:
                ledger.prune_history(before=max(day - k % 5, 0) * DAY, limit=1 + k % 4)
        if op == "prune":
            # Ids pruned may be reserved anew; the plain store forgets the same rows (and nothing
            # else: its counters and accounts stay as its history made them) to stay in step.
            gone = _ids(plain) - _ids(pruned)
            assert all(plain.request(i).state is not RequestState.RESERVED for i in gone)  # type: ignore[union-attr]
            plain._conn.executemany("DELETE FROM requests WHERE request_id=?", [(i,) for i in gone])
    for table in ("clients", "workers"):
        assert plain._debug_rows()[table] == pruned._debug_rows()[table]
    a, b = plain.statistics(), pruned.statistics()
    assert (a.requests_reserved, a.requests_settled, a.requests_failed) == (
        b.requests_reserved, b.requests_settled, b.requests_failed,
    )  # fmt: skip
    reserved = [r.request_id for r in pruned.reserved_requests()]
    assert sorted(reserved) == sorted(r.request_id for r in plain.reserved_requests())
    plain.close()
    pruned.close()
