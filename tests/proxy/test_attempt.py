"""The sans-IO attempt machine, transition by transition: no sockets, no clock, no store."""

from __future__ import annotations

import json
from typing import TypeVar

import pytest

from cocoon import wire
from cocoon.proxy import errors as perr
from cocoon.proxy.attempt import (
    EVENTS,
    TRANSITIONS,
    Attempt,
    AttemptSettings,
    CancelWorker,
    Capped,
    Effect,
    FirstByte,
    Phase,
    RecordProgress,
    RelayChunk,
    RelayHead,
    Report,
    Result,
    SendEnd,
    SendError,
    Settle,
    Verdict,
)
from cocoon.proxy.bill import prompt_estimate
from cocoon.proxy.metering import UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts, price, reservation

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello there, worker"}]}).encode()
MAX_TOKENS = 100
RESERVED = reservation(MAX_TOKENS, len(BODY), 1000, PARAMS)
SID = 1
E = TypeVar("E")


def _attempt(*, max_attempts: int = 3, reserved: int = RESERVED, every: int = 32) -> Attempt:
    return Attempt(
        body=BODY,
        max_tokens=MAX_TOKENS,
        reserved_nano=reserved,
        params=PARAMS,
        audit=UsageAudit(),
        settings=AttemptSettings(max_attempts=max_attempts, progress_every_tokens=every, progress_every_s=60),
    )


def _phase(a: Attempt) -> Phase:
    return a.phase  # read through a call: mypy would keep the phase narrowed from the last assert


def _head() -> wire.ResponseHead:
    return wire.ResponseHead(stream_id=SID, status=200, headers=(("content-type", "text/event-stream"),))


def _delta(text: str) -> wire.ResponseChunk:
    payload = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return wire.ResponseChunk(stream_id=SID, data=b"data: " + json.dumps(payload).encode() + b"\n\n")


def _usage(prompt: int, completion: int) -> wire.Usage:
    return wire.Usage(prompt_tokens=prompt, cached_tokens=0, completion_tokens=completion, reasoning_tokens=0)


def _end(prompt: int = 10, completion: int = 3) -> wire.ResponseEnd:
    return wire.ResponseEnd(stream_id=SID, usage=_usage(prompt, completion), meta={"receipt": {"w": 1}})


def _of(effects: list[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def _streaming(a: Attempt, *texts: str) -> list[Effect]:
    a.begin_try("w1", 1000, now=0.0)
    effects = a.event(_head(), 0.5)
    for i, text in enumerate(texts):
        effects += a.event(_delta(text), 1.0 + i)
    return effects


# -- routing and retries ---------------------------------------------------------------------------


def test_head_relays_and_reports_the_first_byte() -> None:
    a = _attempt()
    assert a.begin_try("w1", 1000, now=10.0) == []
    assert _phase(a) is Phase.WAITING
    effects = a.event(_head(), 10.25)
    assert effects == [FirstByte("w1", 1000, 0.25), RelayHead(200, (("content-type", "text/event-stream"),))]
    assert _phase(a) is Phase.RELAYING


@pytest.mark.parametrize("code", [wire.ErrorCode.BUSY, wire.ErrorCode.UNAVAILABLE, wire.ErrorCode.TIMEOUT])
def test_retryable_refusal_fails_the_worker_and_routes_again(code: wire.ErrorCode) -> None:
    a = _attempt()
    a.begin_try("w1", 1000, now=0.0)
    effects = a.event(wire.StreamError(stream_id=SID, code=code, message="no"), 2.0)
    assert effects == [Report("w1", Verdict.FAILED, 0, 2.0)]
    assert _phase(a) is Phase.ROUTING and a.tried == {"w1"}


def test_definite_refusal_is_passed_on_and_the_worker_did_its_job() -> None:
    a = _attempt()
    a.begin_try("w1", 1000, now=0.0)
    error = wire.StreamError(stream_id=SID, code=wire.ErrorCode.BAD_REQUEST, message="bad body")
    effects = a.event(error, 1.0)
    assert effects == [Report("w1", Verdict.OK, 0, 1.0), SendError(wire.ErrorCode.BAD_REQUEST, "bad body")]
    assert _phase(a) is Phase.DONE and a.result is Result.FAILED


def test_lost_before_the_first_byte_retries_until_the_attempts_are_used() -> None:
    a = _attempt(max_attempts=2)
    a.begin_try("w1", 1000, now=0.0)
    assert _of(a.lost("no first byte", 1.0), Report) == [Report("w1", Verdict.FAILED, 0, 1.0)]
    assert _phase(a) is Phase.ROUTING
    a.begin_try("w2", 1000, now=1.0)
    effects = a.lost("no first byte", 3.0)
    assert effects[0] == Report("w2", Verdict.FAILED, 0, 2.0)
    assert isinstance(effects[1], SendError) and effects[1].code is wire.ErrorCode.UNAVAILABLE
    assert "w2" in effects[1].message
    assert _phase(a) is Phase.DONE and a.result is Result.FAILED and a.retries == 1


def test_no_worker_at_all_is_a_rejection_and_none_left_after_a_try_a_failure() -> None:
    first = _attempt()
    effects = first.no_worker(perr.NoWorkers("m"))
    assert effects == [SendError(wire.ErrorCode.NOT_FOUND, str(perr.NoWorkers("m")))]
    assert first.result is Result.REJECTED
    second = _attempt()
    second.begin_try("w1", 1000, now=0.0)
    second.lost("gone", 1.0)
    [error] = second.no_worker(perr.NoWorkers("m"))
    assert isinstance(error, SendError) and error.code is wire.ErrorCode.UNAVAILABLE
    assert second.result is Result.FAILED
    busy = _attempt()
    [error] = busy.no_worker(perr.AllBusy("m"))
    assert isinstance(error, SendError) and error.code is wire.ErrorCode.BUSY
    assert busy.result is Result.REJECTED


def test_a_chunk_before_the_head_is_the_worker_breaking_the_protocol() -> None:
    a = _attempt()
    a.begin_try("w1", 1000, now=0.0)
    assert _of(a.event(_delta("x"), 1.0), Report) == [Report("w1", Verdict.FAILED, 0, 1.0)]
    assert _phase(a) is Phase.ROUTING


# -- a complete answer -------------------------------------------------------------------------------


def test_chunks_relay_then_the_end_settles_before_it_is_released() -> None:
    a = _attempt()
    effects = _streaming(a, "Hi", " there")
    assert _of(effects, RelayChunk) == [RelayChunk(_delta("Hi").data), RelayChunk(_delta(" there").data)]
    effects = a.event(_end(prompt=10, completion=2), 5.0)
    [settle] = effects
    assert isinstance(settle, Settle) and settle.bill.complete
    assert settle.bill.usage == TokenCounts(prompt=10, completion=2)
    assert _phase(a) is Phase.SETTLING
    effects = a.settled(6.0)
    assert effects[0] == Report("w1", Verdict.OK, 2, 6.0)
    end = effects[1]
    assert isinstance(end, SendEnd) and end.usage == _usage(10, 2)
    assert end.meta["cost_nano"] == price(TokenCounts(prompt=10, completion=2), 1000, PARAMS).client_cost_nano
    assert end.meta["worker_id"] == "w1" and end.meta["receipt"] == {"w": 1}
    assert _phase(a) is Phase.DONE and a.result is Result.SUCCEEDED


def test_an_over_reported_completion_is_capped_kept_as_evidence_and_marks_the_worker() -> None:
    a = _attempt()
    _streaming(a, "ab")
    effects = a.event(_end(prompt=10, completion=90), 5.0)
    [capped, settle] = effects
    assert isinstance(capped, Capped) and isinstance(settle, Settle)
    assert capped.claimed == TokenCounts(prompt=10, completion=90)
    assert settle.bill.usage.completion < 90 and settle.bill.over_reported
    assert settle.bill.audit is not None and settle.bill.audit.over_reported
    report = a.settled(6.0)[0]
    assert isinstance(report, Report) and report.verdict is Verdict.MISMATCH


def test_completion_never_exceeds_max_tokens_whatever_the_worker_claims() -> None:
    a = _attempt()
    _streaming(a, "x" * 400)  # room in the relayed text for far more than max_tokens
    [capped, settle] = a.event(_end(prompt=10, completion=300), 5.0)
    assert isinstance(capped, Capped) and isinstance(settle, Settle)
    assert settle.bill.usage.completion == MAX_TOKENS
    assert any("max_tokens" in r for r in capped.reasons)


def test_the_charge_never_exceeds_the_reservation() -> None:
    small = price(TokenCounts(prompt=10, completion=5), 1000, PARAMS).client_cost_nano
    a = _attempt(reserved=small)
    _streaming(a, "x" * 400)
    [capped, settle] = a.event(_end(prompt=10, completion=50), 5.0)
    assert isinstance(capped, Capped) and isinstance(settle, Settle)
    assert settle.bill.charge.client_cost_nano <= small
    assert settle.bill.usage == TokenCounts(prompt=10, completion=5)
    assert any("reservation" in r for r in capped.reasons)


def test_the_store_refusing_the_bill_withholds_the_answer_and_spares_the_worker() -> None:
    a = _attempt()
    _streaming(a, "Hi")
    a.event(_end(), 5.0)
    effects = a.store_failed(6.0)
    assert effects[0] == Report("w1", Verdict.OK, 0, 6.0)
    assert isinstance(effects[1], SendError) and effects[1].code is wire.ErrorCode.INTERNAL
    assert a.result is Result.FAILED


# -- cut-off answers -----------------------------------------------------------------------------------


def test_worker_lost_mid_answer_bills_the_prompt_and_one_token_per_delta() -> None:
    a = _attempt()
    _streaming(a, "a", "b", "c")
    effects = a.lost("connection lost mid-answer", 5.0)
    assert isinstance(effects[0], CancelWorker)
    settle = effects[-1]
    assert isinstance(settle, Settle) and not settle.bill.complete
    assert settle.bill.usage == TokenCounts(prompt=prompt_estimate(BODY), completion=3)
    effects = a.settled(6.0)
    assert effects[0] == Report("w1", Verdict.FAILED, 0, 6.0)
    error = effects[1]
    assert isinstance(error, SendError) and error.usage == _usage(prompt_estimate(BODY), 3)
    assert a.result is Result.FAILED


def test_worker_error_mid_answer_with_its_usage_bills_its_prompt_count() -> None:
    a = _attempt()
    _streaming(a, "a", "b")
    error = wire.StreamError(
        stream_id=SID, code=wire.ErrorCode.UNAVAILABLE, message="oom", usage=_usage(12, 40)
    )
    [settle] = a.event(error, 5.0)
    assert isinstance(settle, Settle)
    assert settle.bill.usage == TokenCounts(prompt=12, completion=2)  # completion: what was delivered


def test_app_cancel_before_the_first_byte_frees_the_worker_without_blame() -> None:
    a = _attempt()
    a.begin_try("w1", 1000, now=0.0)
    effects = a.app_cancelled(2.0)
    assert effects == [CancelWorker("client cancelled"), Report("w1", Verdict.NEUTRAL, 0, 2.0)]
    assert _phase(a) is Phase.DONE and a.result is Result.CANCELLED


def test_app_cancel_while_routing_ends_the_request() -> None:
    a = _attempt()
    assert a.app_cancelled(0.0) == []
    assert a.result is Result.CANCELLED


def test_app_hangs_up_after_finish_reason_and_the_drained_end_bills_the_whole_answer() -> None:
    a = _attempt()
    _streaming(a, "Hi", " there")
    assert a.app_cancelled(3.0) == []
    assert _phase(a) is Phase.DRAINING
    [settle] = a.event(_end(prompt=10, completion=2), 3.1)
    assert isinstance(settle, Settle) and settle.bill.complete
    assert settle.bill.usage == TokenCounts(prompt=10, completion=2)
    effects = a.settled(3.2)
    assert effects[0] == Report("w1", Verdict.OK, 2, 3.2)
    assert a.result is Result.CANCELLED


def test_the_usage_chunk_and_done_after_the_hang_up_are_not_missed_content() -> None:
    a = _attempt()
    _streaming(a, "Hi")
    a.app_cancelled(3.0)
    usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 1}}
    assert (
        a.event(wire.ResponseChunk(stream_id=SID, data=b"data: " + json.dumps(usage).encode() + b"\n\n"), 3.1)
        == []
    )
    assert a.event(wire.ResponseChunk(stream_id=SID, data=b"data: [DONE]\n\n"), 3.1) == []
    [settle] = a.event(_end(prompt=10, completion=1), 3.2)
    assert isinstance(settle, Settle) and settle.bill.complete


def test_app_stops_generation_mid_answer_and_pays_prompt_plus_delivered() -> None:
    a = _attempt()
    _streaming(a, "a", "b")
    a.app_cancelled(3.0)
    assert a.event(_delta("never seen by the app"), 3.1) == []  # drained, not relayed
    [settle] = a.event(_end(prompt=10, completion=30), 3.2)
    assert isinstance(settle, Settle) and not settle.bill.complete
    assert settle.bill.usage == TokenCounts(prompt=10, completion=2)
    report = a.settled(3.3)[0]
    assert report == Report("w1", Verdict.NEUTRAL, 0, 3.3)


def test_drain_expiry_cancels_the_worker_and_bills_the_estimated_prompt() -> None:
    a = _attempt()
    _streaming(a, "a")
    a.app_cancelled(3.0)
    effects = a.drain_expired(4.0)
    assert effects[0] == CancelWorker("client cancelled")
    settle = effects[1]
    assert isinstance(settle, Settle)
    assert settle.bill.usage == TokenCounts(prompt=prompt_estimate(BODY), completion=1)
    assert _of(a.settled(4.1), Report)[0].verdict is Verdict.NEUTRAL


def test_app_cancel_while_settling_lets_the_bill_finish() -> None:
    a = _attempt()
    _streaming(a, "Hi")
    a.event(_end(prompt=10, completion=1), 5.0)
    assert a.app_cancelled(5.1) == []
    assert _phase(a) is Phase.SETTLING
    assert _of(a.settled(5.2), Report)[0].verdict is Verdict.OK
    assert a.result is Result.CANCELLED


def test_timeout_waiting_fails_the_worker_and_relaying_bills_what_was_delivered() -> None:
    waiting = _attempt()
    waiting.begin_try("w1", 1000, now=0.0)
    effects = waiting.timed_out(9.0)
    assert isinstance(effects[0], CancelWorker)
    assert effects[1] == Report("w1", Verdict.FAILED, 0, 9.0)
    assert isinstance(effects[2], SendError) and effects[2].code is wire.ErrorCode.TIMEOUT
    relaying = _attempt()
    _streaming(relaying, "a", "b")
    effects = relaying.timed_out(9.0)
    settle = effects[-1]
    assert isinstance(settle, Settle) and settle.bill.usage.completion == 2
    assert _of(relaying.settled(9.1), Report)[0].verdict is Verdict.FAILED
    routing = _attempt()
    assert routing.timed_out(1.0) == [SendError(wire.ErrorCode.TIMEOUT, "request timed out in the proxy")]


def test_progress_is_recorded_at_bounded_intervals_not_per_chunk() -> None:
    a = _attempt(every=3)
    effects = _streaming(a, *("t" for _ in range(7)))
    progress = _of(effects, RecordProgress)
    assert progress == [
        RecordProgress(prompt_estimate(BODY), 3),
        RecordProgress(prompt_estimate(BODY), 6),
    ]


def test_messages_after_the_bill_change_nothing() -> None:
    a = _attempt()
    _streaming(a, "a")
    a.event(_end(), 2.0)
    assert a.event(_delta("late"), 2.1) == []
    assert a.lost("late", 2.2) == []


def test_events_out_of_order_are_refused() -> None:
    a = _attempt()
    with pytest.raises(perr.ProxyError):
        a.settled(0.0)
    a.begin_try("w1", 1000, now=0.0)
    with pytest.raises(perr.ProxyError):
        a.begin_try("w2", 1000, now=0.0)


def test_prompt_estimate_reads_only_message_text_and_never_fails() -> None:
    assert prompt_estimate(b"not json") == 0
    assert prompt_estimate(b"[1, 2]") == 0
    body = {
        "messages": [{"role": "user", "content": "abcdefgh"}, {"role": "user", "content": [{"text": "abcd"}]}]
    }
    assert prompt_estimate(json.dumps(body).encode()) == 3 + 2 * 3
    assert prompt_estimate(json.dumps({"prompt": "x" * 40}).encode()) == 10
    assert prompt_estimate(json.dumps({"prompt": [1, 2, 3]}).encode()) == 3  # token ids count exactly
    assert prompt_estimate(json.dumps({"prompt": [[1, 2], [3]]}).encode()) == 3


def test_an_under_report_is_billed_as_claimed_and_is_not_a_cap() -> None:
    a = _attempt()
    _streaming(a, *"abcdef")
    [settle] = a.event(_end(prompt=10, completion=1), 5.0)
    assert isinstance(settle, Settle)
    assert settle.bill.usage == TokenCounts(prompt=10, completion=1) and settle.bill.capped == ()


def test_a_json_body_cut_by_the_hang_up_is_billed_as_cut_off_and_blames_nobody() -> None:
    a = _attempt()
    a.begin_try("w1", 1000, now=0.0)
    a.event(
        wire.ResponseHead(stream_id=SID, status=200, headers=(("content-type", "application/json"),)), 0.5
    )
    a.event(wire.ResponseChunk(stream_id=SID, data=b'{"choices": [{"message": {"content": "Hel'), 1.0)
    a.app_cancelled(1.1)
    a.event(wire.ResponseChunk(stream_id=SID, data=b'lo"}}]}'), 1.2)
    [settle] = a.event(_end(prompt=10, completion=90), 1.3)
    assert isinstance(settle, Settle) and not settle.bill.complete
    assert settle.bill.usage.prompt == 10
    assert _of(a.settled(1.4), Report)[0].verdict is Verdict.NEUTRAL


def test_an_over_report_after_the_app_left_is_capped_but_not_blamed() -> None:
    a = _attempt()
    _streaming(a, "ab")
    a.app_cancelled(2.0)
    effects = a.event(_end(prompt=10, completion=90), 2.1)
    settle = effects[-1]
    assert isinstance(settle, Settle) and settle.bill.usage.completion < 90
    assert _of(a.settled(2.2), Report)[0].verdict is Verdict.OK


# -- the transition table ----------------------------------------------------------------------------


def _in(phase: Phase) -> Attempt:
    """A machine brought to ``phase`` by ordinary events."""
    a = _attempt()
    if phase is Phase.ROUTING:
        return a
    a.begin_try("w1", 1000, now=0.0)
    if phase is Phase.WAITING:
        return a
    a.event(_head(), 0.5)
    a.event(_delta("a"), 1.0)
    if phase is Phase.RELAYING:
        return a
    if phase is Phase.DRAINING:
        a.app_cancelled(2.0)
        return a
    a.event(_end(), 2.0)
    if phase is Phase.SETTLING:
        return a
    a.settled(3.0)
    assert _phase(a) is Phase.DONE
    return a


def _fire(a: Attempt, event: str) -> list[Effect]:
    calls = {
        "begin_try": lambda: a.begin_try("w2", 1000, now=5.0),
        "no_worker": lambda: a.no_worker(perr.NoWorkers("m")),
        "message": lambda: a.event(_delta("b"), 5.0),
        "lost": lambda: a.lost("gone", 5.0),
        "app_cancelled": lambda: a.app_cancelled(5.0),
        "drain_expired": lambda: a.drain_expired(5.0),
        "timed_out": lambda: a.timed_out(5.0),
        "settled": lambda: a.settled(5.0),
        "store_failed": lambda: a.store_failed(5.0),
    }
    return calls[event]()


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_event_in_every_phase_moves_as_the_table_says(phase: Phase, event: str) -> None:
    a = _in(phase)
    allowed = TRANSITIONS[phase].get(event)
    if allowed is None:
        with pytest.raises(perr.ProxyError):
            _fire(a, event)
        assert _phase(a) is phase  # a refused event changes nothing
        return
    effects = _fire(a, event)
    assert _phase(a) in allowed
    # A move into SETTLING ends its effects with the bill: the relay starts writing it before it
    # awaits any other effect, so a cancel landing meanwhile cannot lose it.
    settles = [e for e in effects if isinstance(e, Settle)]
    if phase is not Phase.SETTLING and _phase(a) is Phase.SETTLING:
        assert len(settles) == 1 and effects[-1] is settles[0]
    else:
        assert not settles


def test_the_table_covers_every_phase_and_every_event_is_reachable() -> None:
    assert set(TRANSITIONS) == set(Phase)
    moving = {e for p, row in TRANSITIONS.items() for e, to in row.items() if to != {p}}
    assert moving == EVENTS  # no event is only ever ignored
