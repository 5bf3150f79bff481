"""BillingLedger: funds, reservations, idempotent settlement, failures, anchoring, rollback defence, validation."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import (
    InsufficientFunds,
    LedgerError,
    LedgerInputError,
    ProxyError,
    RequestConflict,
    StoreBusy,
    StoreRolledBack,
    UnknownAccount,
    UnknownRequest,
)
from cocoon.proxy.ledger import BillingLedger, RequestState, Settlement
from cocoon.proxy.pricing import Charge, TokenCounts

from .helpers import PARAMS, TON, charge_of, funded_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with funded_ledger(tmp_path / "billing.db", "alice", "bob") as led:
        yield led


def test_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    with BillingLedger(tmp_path / "b.db") as led:
        assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert led._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_one_writer_only(tmp_path: Path) -> None:
    first = BillingLedger(tmp_path / "b.db")
    with pytest.raises(StoreBusy):
        BillingLedger(tmp_path / "b.db")
    first.close()
    first.close()  # idempotent
    with BillingLedger(tmp_path / "b.db"):
        pass
    with pytest.raises(LedgerError):
        first.available("alice")


def test_available_follows_reference_formula(ledger: BillingLedger) -> None:
    # min(balance, stake) + charged × price − cost − reserved
    assert ledger.available("alice") == 10 * TON
    ledger.set_client_chain_state("alice", balance=3 * TON, stake=10 * TON, charged_tokens=0, now=2.0)
    assert ledger.available("alice") == 3 * TON  # never more than the balance
    ledger.set_client_chain_state("alice", balance=100 * TON, stake=10 * TON, charged_tokens=0, now=2.0)
    ledger.reserve("r1", "alice", 1 * TON, 3.0)
    assert ledger.available("alice") == 9 * TON
    charge = charge_of(100_000, 50_000)  # 150 000 tokens × 2000 = 0.3 TON
    ledger.settle("r1", "w1", charge, 4.0)
    assert ledger.available("alice") == 10 * TON - charge.client_cost_nano
    # Once the usage is charged on chain, the stake is free again (balance dropped by the charge).
    ledger.set_client_chain_state(
        "alice", balance=100 * TON - charge.client_cost_nano, stake=10 * TON, charged_tokens=150_000, now=5.0
    )
    assert ledger.available("alice") == 10 * TON


def test_no_work_without_funds(ledger: BillingLedger) -> None:
    with pytest.raises(InsufficientFunds) as info:
        ledger.reserve("r1", "alice", 10 * TON + 1, 2.0)
    assert info.value.http_status == 402
    assert info.value.available == 10 * TON
    with pytest.raises(InsufficientFunds):
        ledger.reserve("r2", "nobody", 1, 2.0)
    assert ledger.request("r1") is None and ledger.request("r2") is None
    ledger.reserve("r3", "alice", 6 * TON, 2.0)
    with pytest.raises(InsufficientFunds):
        ledger.reserve("r4", "alice", 5 * TON, 2.0)  # the first reservation holds funds


def test_settle_is_idempotent(ledger: BillingLedger) -> None:
    charge = charge_of(30, 100)
    ledger.reserve("r1", "alice", 1_000_000, 1.0, model="m")
    first = ledger.settle("r1", "w1", charge, 2.0, usage=TokenCounts(prompt=30, completion=100))
    again = ledger.settle("r1", "w1", charge, 3.0, usage=TokenCounts(prompt=30, completion=100))
    assert first == again
    assert first.state is RequestState.SETTLED and first.finished_at == 2.0
    totals = ledger.client_totals("alice")
    assert totals.tokens == charge.total_adjusted
    assert totals.cost_nano == charge.client_cost_nano
    assert totals.reserved_nano == 0
    w = ledger.worker_totals("w1")
    assert (w.tokens, w.earnings_nano, w.requests) == (charge.total_adjusted, charge.worker_earning_nano, 1)
    # A replay with different numbers is a bug or an attack: refused, nothing changes.
    before = ledger._debug_rows()
    with pytest.raises(RequestConflict):
        ledger.settle("r1", "w1", charge_of(30, 101), 4.0)
    with pytest.raises(RequestConflict):
        ledger.settle("r1", "w2", charge, 4.0)
    with pytest.raises(RequestConflict):
        ledger.fail("r1", None, now=4.0)
    with pytest.raises(RequestConflict):
        ledger.reserve("r1", "alice", 1_000_000, 4.0)
    assert ledger._debug_rows() == before


def test_reserve_repeat_is_idempotent(ledger: BillingLedger) -> None:
    a = ledger.reserve("r1", "alice", 500, 1.0)
    b = ledger.reserve("r1", "alice", 500, 2.0)
    assert a == b
    assert ledger.client_totals("alice").reserved_nano == 500
    with pytest.raises(RequestConflict):
        ledger.reserve("r1", "bob", 500, 2.0)


def test_fail_charges_only_what_was_delivered(ledger: BillingLedger) -> None:
    ledger.reserve("r1", "alice", 10_000_000, 1.0)
    delivered = charge_of(30, 7)
    rec = ledger.fail("r1", delivered, worker="w1", now=2.0)
    assert rec.state is RequestState.FAILED and rec.charge == delivered
    assert ledger.fail("r1", delivered, worker="w1", now=3.0) == rec  # replay
    assert ledger.client_totals("alice").cost_nano == delivered.client_cost_nano
    assert ledger.client_totals("alice").reserved_nano == 0
    assert ledger.worker_totals("w1").earnings_nano == delivered.worker_earning_nano
    ledger.reserve("r2", "alice", 10_000_000, 1.0)
    ledger.fail("r2", None, now=2.0)
    assert ledger.client_totals("alice").cost_nano == delivered.client_cost_nano
    ledger.reserve("r3", "alice", 1, 1.0)
    with pytest.raises(LedgerInputError):
        ledger.fail("r3", delivered, now=2.0)  # a delivered charge needs its worker
    with pytest.raises(UnknownRequest):
        ledger.settle("nope", "w1", delivered, 1.0)


def test_release_stale_after_restart(tmp_path: Path) -> None:
    with funded_ledger(tmp_path / "b.db", "alice") as led:
        led.reserve("old", "alice", 100, 1.0)
        led.reserve("new", "alice", 100, 50.0)
    with BillingLedger(tmp_path / "b.db") as led:
        assert led.release_stale(now=60.0, older_than=10.0) == ["old"]
        assert led.client_totals("alice").reserved_nano == 100
        assert [r.request_id for r in led.reserved_requests()] == ["new"]
        assert led.request("old").state is RequestState.FAILED  # type: ignore[union-attr]


def test_state_commits_and_committed_tokens(ledger: BillingLedger) -> None:
    session = bytes(range(32))
    s1 = ledger.start_session(session, 1.0)
    ledger.reserve("r1", "alice", 10**9, 1.0)
    ledger.settle("r1", "w1", charge_of(10, 10), 2.0)
    s2 = ledger.bump_seqno(3.0)
    ledger.reserve("r2", "alice", 10**9, 3.0)
    ledger.settle("r2", "w1", charge_of(20, 20), 4.0)
    s3 = ledger.bump_seqno(5.0)
    assert (s1, s2, s3) == (1, 2, 3)
    assert ledger.client_totals("alice").committed_tokens == 0
    assert ledger.mark_committed(s2, session) is True
    assert ledger.client_totals("alice").committed_tokens == 20
    assert ledger.worker_totals("w1").committed_tokens == 20
    assert ledger.mark_committed(s2, session) is False  # replay
    assert ledger.mark_committed(s1, session) is False  # older
    assert ledger.mark_committed(s3, session) is True
    assert ledger.client_totals("alice").committed_tokens == 60
    assert ledger.client_totals("bob").committed_tokens == 0
    stats = ledger.statistics()
    assert (stats.seqno, stats.last_committed_seqno, stats.session_hash) == (3, 3, session.hex())
    with pytest.raises(StoreRolledBack):
        ledger.mark_committed(4, session)


def test_restored_old_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with funded_ledger(path, "alice") as led:
        led.bump_seqno(1.0)
        backup = tmp_path / "backup.db"
        src = sqlite3.connect(path)
        dst = sqlite3.connect(backup)
        src.backup(dst)
        src.close()
        dst.close()
        led.reserve("r1", "alice", 10**9, 2.0)
        led.settle("r1", "w1", charge_of(1000, 1000), 3.0)
        seq = led.bump_seqno(4.0)
        led.mark_committed(seq, bytes(32))
        led.check_not_rolled_back(seq)
    # The operator restores yesterday's copy: the chain knows commit 2, the store only reached 1.
    path.unlink()
    backup.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with BillingLedger(path) as old:
        with pytest.raises(StoreRolledBack) as info:
            old.check_not_rolled_back(seq)
        assert info.value.http_status == 503
        # The chain also shows charges the old store never billed.
        with pytest.raises(StoreRolledBack):
            old.set_client_chain_state("alice", balance=TON, stake=TON, charged_tokens=2000, now=5.0)
        old.upsert_worker("w1", contract="", now=5.0)
        with pytest.raises(StoreRolledBack):
            old.set_worker_chain_state("w1", paid_tokens=1, now=5.0)
        # Workers and clients hold our signed records of their cumulative tokens: higher than ours → refuse.
        with pytest.raises(StoreRolledBack):
            old.check_worker_report("w1", 2000)
        with pytest.raises(StoreRolledBack):
            old.check_client_report("alice", 2000)
        old.check_worker_report("w1", 0)


def test_reports_at_or_below_ours_are_fine(ledger: BillingLedger) -> None:
    ledger.reserve("r1", "alice", 10**7, 1.0)
    ledger.settle("r1", "w1", charge_of(10, 10), 2.0)
    ledger.check_worker_report("w1", 20)
    ledger.check_worker_report("w1", 5)
    ledger.check_client_report("alice", 20)
    with pytest.raises(StoreRolledBack):
        ledger.check_worker_report("w1", 21)
    with pytest.raises(StoreRolledBack):
        ledger.check_worker_report("never-seen", 1)
    with pytest.raises(LedgerInputError):
        ledger.check_worker_report("w1", -1)


def test_accounts_and_contracts(ledger: BillingLedger) -> None:
    with pytest.raises(RequestConflict):
        ledger.upsert_client("alice", contract="other", price_per_token=PARAMS.price_per_token, now=2.0)
    with pytest.raises(RequestConflict):
        ledger.upsert_client("alice", contract="sc-alice", price_per_token=1, now=2.0)
    with pytest.raises(UnknownAccount):
        ledger.available("carol")
    with pytest.raises(UnknownAccount):
        ledger.set_client_chain_state("carol", balance=1, stake=1, charged_tokens=0, now=2.0)
    w = ledger.upsert_worker("w9", contract="", now=1.0)
    assert w.contract == ""
    assert ledger.upsert_worker("w9", contract="sc-w9", now=2.0).contract == "sc-w9"
    with pytest.raises(RequestConflict):
        ledger.upsert_worker("w9", contract="sc-other", now=3.0)
    # on-chain charges never go down
    ledger.reserve("r", "alice", 10**6, 1.0)
    ledger.settle("r", "w9", charge_of(100, 100), 1.0)
    ledger.set_client_chain_state("alice", balance=TON, stake=TON, charged_tokens=150, now=2.0)
    ledger.set_client_chain_state("alice", balance=TON, stake=TON, charged_tokens=100, now=3.0)
    assert ledger.client_totals("alice").charged_tokens == 150


def test_statistics(ledger: BillingLedger) -> None:
    ledger.reserve("r1", "alice", 10**6, 1.0)
    ledger.reserve("r2", "bob", 10**6, 1.0)
    ledger.reserve("r3", "bob", 10**6, 1.0)
    c1, c2 = charge_of(10, 20), charge_of(5, 5, coefficient=2000)
    ledger.settle("r1", "w1", c1, 2.0)
    ledger.fail("r2", c2, worker="w2", now=2.0)
    s = ledger.statistics()
    assert (s.clients, s.workers) == (2, 2)
    assert (s.requests_reserved, s.requests_settled, s.requests_failed) == (1, 1, 1)
    assert s.revenue_nano == c1.client_cost_nano + c2.client_cost_nano
    assert s.worker_earnings_nano == c1.worker_earning_nano + c2.worker_earning_nano
    assert s.proxy_fees_nano == s.revenue_nano - s.worker_earnings_nano
    assert s.reserved_nano == 10**6
    assert s.client_balance_nano == 200 * TON and s.client_stake_nano == 20 * TON
    assert s.adjusted_tokens == c1.total_adjusted + c2.total_adjusted
    assert [c.client for c in ledger.clients()] == ["alice", "bob"]
    assert [w.worker for w in ledger.workers()] == ["w1", "w2"]


def test_overflow_is_refused_without_change(ledger: BillingLedger) -> None:
    big = Charge(0, 0, 2**62, 0, 2**62, 2**62, 0, 2**62)
    ledger.reserve("r1", "alice", 1, 1.0)
    ledger.reserve("r2", "alice", 1, 1.0)
    ledger.settle("r1", "w1", big, 2.0)
    before = ledger._debug_rows()
    with pytest.raises(LedgerInputError):
        ledger.settle("r2", "w1", big, 2.0)
    assert ledger._debug_rows() == before


# ---------------------------------------------------------------- property-based: bad input changes nothing

_junk = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.none(),
    st.binary(max_size=40),
    st.sampled_from(["alice", "bob", "r1", "w1", "", "\x00", "a" * 257]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(range(15)), args=st.lists(_junk, min_size=5, max_size=5))
def test_bad_input_changes_nothing(ledger: BillingLedger, op: int, args: list[Any]) -> None:
    a, b, c, d, e = args
    calls: list[Callable[[], object]] = [
        lambda: ledger.upsert_client(a, contract=b, price_per_token=c, now=d),
        lambda: ledger.set_client_chain_state(a, balance=b, stake=c, charged_tokens=d, now=e),
        lambda: ledger.upsert_worker(a, contract=b, now=c),
        lambda: ledger.set_worker_chain_state(a, paid_tokens=b, now=c),
        lambda: ledger.reserve(a, b, c, d, model=e),
        lambda: ledger.settle(a, b, c, d, usage=e),
        lambda: ledger.fail(a, b, worker=c, now=d, usage=e),
        lambda: ledger.bump_seqno(a),
        lambda: ledger.mark_committed(a, b),
        lambda: ledger.check_not_rolled_back(a),
        lambda: ledger.start_session(a, b),
        lambda: ledger.release_stale(now=a, older_than=b),
        lambda: ledger.ensure_client(a, now=b, credit=c, contract=d, price_per_token=e),
        lambda: ledger.release(a, now=b),
        lambda: ledger.check_worker_report(a, b),
    ]
    before = ledger._debug_rows()
    try:
        calls[op]()
    except ProxyError:
        assert ledger._debug_rows() == before
    # Anything else (TypeError, sqlite3 errors…) would escape and fail the test.


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rid=st.one_of(st.text(max_size=300), st.integers(), st.none()),
    amount=st.one_of(st.integers(min_value=-(2**65), max_value=2**65), st.floats(), st.booleans()),
    now=st.one_of(st.floats(), st.integers(min_value=-5, max_value=10**12)),
)
def test_reserve_validation(ledger: BillingLedger, rid: Any, amount: Any, now: Any) -> None:
    before = ledger._debug_rows()
    try:
        rec = ledger.reserve(rid, "alice", amount, now)
    except (LedgerError, InsufficientFunds):
        assert ledger._debug_rows() == before
    else:
        assert rec.reserved_nano == amount and rec.state is RequestState.RESERVED
        ledger.fail(rid, None, now=1.0)


def test_ensure_client_credits_only_unfunded_clients(tmp_path: Path) -> None:
    with BillingLedger(tmp_path / "b.db") as led:
        t = led.ensure_client("carol", now=1.0, credit=5 * TON)
        assert (t.balance_nano, t.stake_nano, t.available_nano) == (5 * TON, 5 * TON, 5 * TON)
        led.reserve("r1", "carol", TON, 2.0)
        led.settle("r1", "w1", charge_of(1000, 1000), 3.0)
        again = led.ensure_client("carol", now=4.0, credit=5 * TON)  # every reconnect: no new credit
        assert again.balance_nano == 5 * TON and again.cost_nano == charge_of(1000, 1000).client_cost_nano
        # a chain-funded client gets no test credit
        led.ensure_client("dave", now=1.0)
        led.set_client_chain_state("dave", balance=TON, stake=TON // 2, charged_tokens=0, now=1.0)
        assert led.ensure_client("dave", now=2.0, credit=5 * TON).balance_nano == TON
        # the price becomes known later
        assert led.upsert_client("dave", contract="sc", price_per_token=2000, now=3.0).price_per_token == 2000


def test_release_frees_only_what_is_held(ledger: BillingLedger) -> None:
    ledger.reserve("r1", "alice", 10**6, 1.0)
    rec = ledger.release("r1", now=2.0)
    assert rec.state is RequestState.FAILED and ledger.client_totals("alice").reserved_nano == 0
    assert ledger.release("r1", now=3.0) == rec
    ledger.reserve("r2", "alice", 10**6, 1.0)
    settled = ledger.settle("r2", "w1", charge_of(5, 5), 2.0)
    assert ledger.release("r2", now=3.0) == settled  # a finally after settle changes nothing
    with pytest.raises(UnknownRequest):
        ledger.release("nope", now=1.0)


def test_settle_many_is_one_commit_with_per_item_outcomes(ledger: BillingLedger) -> None:
    for i in range(4):
        ledger.reserve(f"r{i}", "alice", 10**6, 1.0)
    ledger.settle("r3", "w1", charge_of(1, 1), 1.5)
    c = charge_of(10, 10)
    items: list[Any] = [
        Settlement("r0", "w1", c),
        Settlement("r1", "w2", charge_of(5, 0), ok=False),
        Settlement("nope", "w1", c),  # unknown
        Settlement("r3", "w1", charge_of(1, 1)),  # replay: no-op
        Settlement("r3", "w1", c),  # conflicting replay
        Settlement("r2", None, c),  # a settled request needs its worker
        "junk",
        Settlement("r2", None, Charge.zero(), ok=False),  # released, nothing charged
    ]
    out = ledger.settle_many(items, 2.0)
    assert [type(x).__name__ for x in out] == [
        "RequestRecord",
        "RequestRecord",
        "UnknownRequest",
        "RequestRecord",
        "RequestConflict",
        "LedgerInputError",
        "LedgerInputError",
        "RequestRecord",
    ]
    totals = ledger.client_totals("alice")
    assert totals.tokens == c.total_adjusted + charge_of(5, 0).total_adjusted + charge_of(1, 1).total_adjusted
    assert totals.reserved_nano == 0
    assert ledger.request("r1").state is RequestState.FAILED  # type: ignore[union-attr]
    assert ledger.worker_totals("w2").earnings_nano == charge_of(5, 0).worker_earning_nano
    assert ledger.settle_many([], 3.0) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 50), st.booleans(), st.sampled_from(["w1", "w2", None])),
        max_size=12,
    )
)
def test_settle_many_matches_one_by_one(
    tmp_path: Path, picks: list[tuple[int, int, bool, str | None]]
) -> None:
    """A batch leaves the store exactly as the same operations one at a time would."""
    import uuid

    base = tmp_path / uuid.uuid4().hex
    base.mkdir()
    stores = [funded_ledger(base / "a.db", "alice"), funded_ledger(base / "b.db", "alice")]
    try:
        for led in stores:
            for i in range(5):
                led.reserve(f"r{i}", "alice", 10**6, 1.0)
        items = [Settlement(f"r{i}", w, charge_of(n, n), ok=ok) for i, n, ok, w in picks]
        batch = stores[0].settle_many(items, 2.0)
        single: list[object] = []
        for it in items:
            try:
                if it.ok:
                    single.append(stores[1].settle(it.request_id, it.worker, it.charge, 2.0))  # type: ignore[arg-type]
                else:
                    single.append(stores[1].fail(it.request_id, it.charge, worker=it.worker, now=2.0))
            except LedgerError as exc:
                single.append(exc)
        assert [type(x) for x in batch] == [type(x) for x in single]
        assert stores[0]._debug_rows() == stores[1]._debug_rows()
    finally:
        for led in stores:
            led.close()
