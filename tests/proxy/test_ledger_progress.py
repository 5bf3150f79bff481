"""Durable progress of a streamed answer: a release or a restart charges what was relayed, within the reservation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocoon.proxy.errors import LedgerInputError, ProxyError, RequestConflict, UnknownRequest
from cocoon.proxy.ledger import BillingLedger, RequestState
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import TokenCounts, price

from .helpers import PARAMS, TON, charge_of, funded_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with funded_ledger(tmp_path / "billing.db", "alice") as led:
        yield led


def test_restart_charges_recorded_progress(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    with funded_ledger(path, "alice") as led:
        led.reserve("streamed", "alice", 10**8, 1.0)
        led.assign_worker("streamed", "w1", coefficient=1500, params=PARAMS, now=1.5)
        led.record_progress("streamed", prompt_tokens=40, completion_tokens=10, now=2.0)
        led.record_progress("streamed", prompt_tokens=40, completion_tokens=25, now=3.0)
        led.record_progress("streamed", prompt_tokens=40, completion_tokens=20, now=3.5)  # never goes back
        led.reserve("silent", "alice", 10**8, 1.0)  # reserved, nothing relayed yet
        rec = led.request("streamed")
        assert rec is not None and rec.progress is not None
        assert (rec.progress.worker, rec.progress.usage) == ("w1", TokenCounts(prompt=40, completion=25))
    # The process dies here; the next one recovers.
    with BillingLedger(path) as led:
        assert led.release_stale(now=10.0, older_than=10.0) == ["silent", "streamed"]
        rec = led.request("streamed")
        expected = price(TokenCounts(prompt=40, completion=25), 1500, PARAMS)
        assert rec is not None and rec.state is RequestState.FAILED and rec.charge == expected
        assert rec.worker == "w1" and rec.usage == TokenCounts(prompt=40, completion=25)
        assert led.worker_totals("w1").earnings_nano == expected.worker_earning_nano
        assert led.request("silent").charge.total_adjusted == 0  # type: ignore[union-attr]
        alice = led.client_totals("alice")
        assert (alice.cost_nano, alice.reserved_nano) == (expected.client_cost_nano, 0)


def test_recovery_never_exceeds_the_reservation(ledger: BillingLedger) -> None:
    reserved = price(TokenCounts(prompt=10, completion=10), 1000, PARAMS).client_cost_nano
    ledger.reserve("r1", "alice", reserved, 1.0)
    ledger.assign_worker("r1", "w1", coefficient=1000, params=PARAMS, now=1.0)
    ledger.record_progress("r1", prompt_tokens=10, completion_tokens=10**6, now=2.0)  # a lying count
    rec = ledger.release("r1", now=3.0)
    assert rec.charge.client_cost_nano == reserved
    assert rec.usage == TokenCounts(prompt=10, completion=10)
    assert ledger.client_totals("alice").reserved_nano == 0


def test_progress_rules(ledger: BillingLedger) -> None:
    ledger.reserve("r1", "alice", 10**8, 1.0)
    with pytest.raises(RequestConflict):  # whom to pay is not known yet
        ledger.record_progress("r1", prompt_tokens=1, completion_tokens=1, now=1.0)
    with pytest.raises(UnknownRequest):
        ledger.record_progress("nope", prompt_tokens=1, completion_tokens=1, now=1.0)
    ledger.assign_worker("r1", "w1", coefficient=1000, params=PARAMS, now=1.0)
    ledger.assign_worker("r1", "w2", coefficient=2000, params=PARAMS, now=1.0)  # a retry before any byte
    ledger.record_progress("r1", prompt_tokens=5, completion_tokens=1, now=2.0)
    before = ledger._debug_rows()
    with pytest.raises(RequestConflict):  # tokens were relayed from w2: it is paid for them
        ledger.assign_worker("r1", "w1", coefficient=1000, params=PARAMS, now=3.0)
    bad_calls: list[Callable[[], object]] = [
        lambda: ledger.record_progress("r1", prompt_tokens=-1, completion_tokens=1, now=3.0),
        lambda: ledger.record_progress("r1", prompt_tokens=True, completion_tokens=1, now=3.0),  # type: ignore[arg-type]
        lambda: ledger.assign_worker("r1", "w2", coefficient=-5, params=PARAMS, now=3.0),
        lambda: ledger.assign_worker("r1", "w2", coefficient=2000, params="cheap", now=3.0),  # type: ignore[arg-type]
    ]
    for bad in bad_calls:
        with pytest.raises(LedgerInputError):
            bad()
    assert ledger._debug_rows() == before
    # The final settlement wins over progress; a late progress record changes nothing.
    done = ledger.settle("r1", "w2", charge_of(5, 3, 2000), 4.0)
    assert ledger.record_progress("r1", prompt_tokens=50, completion_tokens=50, now=5.0) == done
    assert ledger.release("r1", now=6.0) == done
    with pytest.raises(RequestConflict):
        ledger.assign_worker("r1", "w2", coefficient=2000, params=PARAMS, now=6.0)


def test_capped_answer_evidence_is_kept_with_the_settlement(ledger: BillingLedger) -> None:
    tally = RelayTally()
    raw = b'data: {"choices":[{"delta":{"content":"short answer"}}]}\n\ndata: [DONE]\n\n'
    tally.feed(raw)
    tally.finish()
    audit = UsageAudit().check(TokenCounts(prompt=10, completion=5000), tally, request_bytes=100)
    assert audit.over_reported
    ledger.reserve("r1", "alice", TON, 1.0, model="m")
    ledger.settle("r1", "w1", price(audit.billable, 1000, PARAMS), 2.0, usage=audit.billable, audit=audit)
    (ev,) = ledger.capped_answers()
    assert (ev.request_id, ev.worker, ev.model) == ("r1", "w1", "m")
    assert ev.claimed == TokenCounts(prompt=10, completion=5000) and ev.billable == audit.billable
    assert (ev.relayed_text, ev.relayed_text_bytes, ev.relayed_raw_bytes) == ("short answer", 12, len(raw))
    assert ev.relayed_sha256 == tally.raw_sha256 and ev.basis == "bytes" and ev.reasons == audit.reasons
    assert ledger.capped_answers(worker="w2") == []
    # An audit that passed leaves no evidence; junk is refused and changes nothing.
    honest = UsageAudit().check(TokenCounts(prompt=10, completion=3), tally, request_bytes=100)
    ledger.reserve("r2", "alice", TON, 1.0)
    ledger.settle("r2", "w1", charge_of(10, 3), 2.0, audit=honest)
    ledger.reserve("r3", "alice", TON, 1.0)
    before = ledger._debug_rows()
    with pytest.raises(LedgerInputError):
        ledger.settle("r3", "w1", charge_of(1, 1), 2.0, audit="evidence")  # type: ignore[arg-type]
    assert ledger._debug_rows() == before
    assert len(ledger.capped_answers()) == 1


def test_settle_many_keeps_evidence_too(ledger: BillingLedger) -> None:
    from cocoon.proxy.ledger import Settlement

    tally = RelayTally()
    tally.add_text("tiny")
    audit = UsageAudit().check(TokenCounts(completion=900), tally)
    ledger.reserve("r1", "alice", TON, 1.0)
    ledger.reserve("r2", "alice", TON, 1.0)
    charge = price(audit.billable, 1000, PARAMS)
    out = ledger.settle_many(
        [
            Settlement("r1", "w1", charge, usage=audit.billable, audit=audit),
            Settlement("r2", None, charge, ok=False, audit=audit),
        ],
        2.0,
    )
    assert type(out[1]).__name__ == "LedgerInputError"  # a delivered charge needs its worker
    (ev,) = ledger.capped_answers()
    assert ev.request_id == "r1" and ev.claimed.completion == 900 and ev.relayed_text == "tiny"


_junk = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.none(),
    st.sampled_from(["r1", "w1", "", "\x00", "a" * 257, PARAMS]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(range(4)), args=st.lists(_junk, min_size=5, max_size=5))
def test_bad_input_to_progress_changes_nothing(ledger: BillingLedger, op: int, args: list[Any]) -> None:
    if ledger.request("r1") is None:
        ledger.reserve("r1", "alice", TON, 1.0)
    a, b, c, d, e = args
    calls: list[Callable[[], object]] = [
        lambda: ledger.assign_worker(a, b, coefficient=c, params=d, now=e),
        lambda: ledger.assign_worker("r1", b, coefficient=c, params=d, now=e),
        lambda: ledger.record_progress(a, prompt_tokens=b, completion_tokens=c, now=d),
        lambda: ledger.capped_answers(worker=a),
    ]
    before = ledger._debug_rows()
    try:
        calls[op]()
    except ProxyError:
        assert ledger._debug_rows() == before
