"""The class rate, its SLA and max_cost in the bill: premium only when the answer kept the class's
promise, the 1.0× rate otherwise, and never a charge above max_cost whatever the worker claims."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon.chain.market import DEFAULT_SERVICE_CLASSES, ServiceClass
from cocoon.proxy.bill import AnswerTiming, Terms, bill_complete, bill_cut_off
from cocoon.proxy.metering import RelayTally, UsageAudit
from cocoon.proxy.pricing import PriceParams, TokenCounts, price, reservation

PARAMS = PriceParams(price_per_token=100, worker_fee_per_token=80)
PREMIUM = DEFAULT_SERVICE_CLASSES["premium"]  # 1.5×, TTFT ≤ 2 s, ≥ 20 tok/s
AUDIT = UsageAudit()
WORDS = "the quick brown fox jumps over the lazy dog " * 20


def tally(deltas: int = 40) -> RelayTally:
    t = RelayTally()
    for i in range(deltas):
        t.add_chunk({"choices": [{"index": 0, "delta": {"content": WORDS[i * 4 : i * 4 + 4]}}]})
    return t


def terms(**kw: object) -> Terms:
    base: dict[str, object] = {
        "max_tokens": 200,
        "request_bytes": 300,
        "reserved_nano": reservation(200, 300, 4000, PARAMS),
        "coefficient": 1000,
        "params": PARAMS,
    }
    return Terms(**(base | kw))  # type: ignore[arg-type]


CLAIM = TokenCounts(prompt=30, completion=40)


def test_a_premium_answer_that_kept_its_sla_is_billed_at_the_class_rate() -> None:
    bill = bill_complete(CLAIM, tally(), terms(service_class=PREMIUM, timing=AnswerTiming(0.5, 1.0)), AUDIT)
    assert bill.coefficient == 1500 and bill.sla_met and bill.service_class == "premium"
    assert bill.charge == price(CLAIM, 1500, PARAMS)
    assert bill.class_meta() == {"service_class": "premium", "sla_met": True}


def test_an_answer_that_broke_its_sla_is_billed_at_the_elastic_rate() -> None:
    late = bill_complete(CLAIM, tally(), terms(service_class=PREMIUM, timing=AnswerTiming(2.5, 1.0)), AUDIT)
    slow = bill_complete(CLAIM, tally(), terms(service_class=PREMIUM, timing=AnswerTiming(0.5, 4.0)), AUDIT)
    unmeasured = bill_complete(CLAIM, tally(), terms(service_class=PREMIUM), AUDIT)
    for bill in (late, slow, unmeasured):  # 39 tokens in 4 s is under 20 tok/s
        assert bill.coefficient == 1000 and bill.sla_met is False
        assert bill.charge == price(CLAIM, 1000, PARAMS)


def test_a_cut_off_answer_is_never_billed_at_the_class_rate() -> None:
    bill = bill_cut_off(tally(), terms(service_class=PREMIUM), AUDIT, claimed=CLAIM, prompt_guess=0)
    assert bill.coefficient == 1000 and bill.sla_met is False and not bill.complete


def test_without_a_class_the_bill_is_as_before() -> None:
    bill = bill_complete(CLAIM, tally(), terms(timing=AnswerTiming(9.0, 9.0)), AUDIT)
    assert bill.coefficient == 1000 and bill.sla_met is None and bill.class_meta() == {}


def test_a_worker_claiming_more_than_max_cost_is_capped_at_it() -> None:
    max_cost = price(TokenCounts(prompt=30, completion=10), 1000, PARAMS).client_cost_nano
    bill = bill_complete(CLAIM, tally(), terms(max_cost=max_cost), AUDIT)
    assert bill.charge.client_cost_nano <= max_cost < price(CLAIM, 1000, PARAMS).client_cost_nano
    assert bill.usage.completion == 10 and any("max_cost" in r for r in bill.capped)
    assert bill.audit is not None and bill.audit.over_reported  # the store keeps the evidence


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.integers(0, 400),
    completion=st.integers(0, 400),
    deltas=st.integers(0, 80),
    coefficient=st.integers(0, 4000),
    multiplier=st.integers(1000, 5000),
    max_cost=st.none() | st.integers(0, 10**7),
    ttft=st.floats(0, 10),
    decode=st.floats(0, 10),
    complete=st.booleans(),
)
def test_every_bill_is_within_max_cost_and_the_rate_follows_the_sla(
    prompt: int,
    completion: int,
    deltas: int,
    coefficient: int,
    multiplier: int,
    max_cost: int | None,
    ttft: float,
    decode: float,
    complete: bool,
) -> None:
    cls = ServiceClass(name="gold", price_multiplier=multiplier, target_ttft_ms=1000, min_tokens_per_s=10)
    t = terms(
        coefficient=coefficient, max_cost=max_cost, service_class=cls, timing=AnswerTiming(ttft, decode)
    )
    claim = TokenCounts(prompt=prompt, completion=completion)
    if complete:
        bill = bill_complete(claim, tally(deltas), t, AUDIT)
    else:
        bill = bill_cut_off(tally(deltas), t, AUDIT, claimed=claim, prompt_guess=0)
    limit = t.reserved_nano if max_cost is None else min(t.reserved_nano, max_cost)
    assert bill.charge.client_cost_nano <= limit
    assert bill.charge.worker_earning_nano + bill.charge.proxy_fee_nano == bill.charge.client_cost_nano
    assert bill.charge == price(bill.usage, bill.coefficient, PARAMS)
    if bill.sla_met:
        assert complete and ttft <= 1.0 and bill.coefficient == coefficient * multiplier // 1000
    else:
        assert bill.coefficient == coefficient  # broken, cut off or unmeasured: the 1.0× rate
