"""Money bounds of sealed answers as properties over whole histories (the sans-IO attempt machine):
whatever frames a worker sends, whatever usage it claims and whatever count of its plaintext it
reports, the bill never exceeds the sealed sizes' bound, max_tokens or the reservation, and a
reported count never raises the bill above what the sizes alone allow."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from cocoon import wire
from cocoon.proxy.attempt import Attempt, Phase, Settle
from cocoon.proxy.metering import DEFAULT_AUDIT_POLICY, UsageAudit
from cocoon.proxy.pricing import PriceParams, reservation
from cocoon.proxy.sealed import FRAME_OVERHEAD

PARAMS = PriceParams(price_per_token=2000, worker_fee_per_token=1000)
SID = 1
PLAIN_BYTES = 300  # the sealed body's plaintext size (bounds the prompt)
ENVELOPE = b"\x00" * 1500  # what the proxy holds of the body: its size only
counts = st.integers(min_value=0, max_value=10**7)


def _attempt(max_tokens: int) -> Attempt:
    reserved = reservation(max_tokens, len(ENVELOPE), 1000, PARAMS)
    return Attempt(
        body=ENVELOPE,
        max_tokens=max_tokens,
        reserved_nano=reserved,
        params=PARAMS,
        audit=UsageAudit(),
        sealed_plain_bytes=PLAIN_BYTES,
    )


def _size_bound(frames: list[int]) -> int:
    plain = sum(max(size - FRAME_OVERHEAD, 0) for size in frames)
    policy = DEFAULT_AUDIT_POLICY
    return math.ceil(plain * (1 + policy.completion_slack_ratio)) + policy.completion_slack_tokens


def _bill(attempt: Attempt, frames: list[int], claim: wire.Usage, content: object) -> Settle:
    attempt.begin_try("w", 1000, 0.0)
    head = (("content-type", "text/event-stream"),)
    attempt.event(wire.ResponseHead(stream_id=SID, status=200, headers=head), 0.1)
    for size in frames:
        attempt.event(wire.ResponseChunk(stream_id=SID, data=b"\x01" * size), 0.2)
    meta = {"e2ee": {"v": 1, "content": content}}
    effects = attempt.event(wire.ResponseEnd(stream_id=SID, usage=claim, meta=meta), 0.3)
    assert attempt.phase is Phase.SETTLING
    (settle,) = [e for e in effects if isinstance(e, Settle)]
    return settle


@settings(max_examples=100, deadline=None)
@given(
    frames=st.lists(st.integers(min_value=0, max_value=4000), max_size=40),
    prompt=counts,
    completion=counts,
    max_tokens=st.integers(min_value=1, max_value=100_000),
    content=st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {"text_bytes": counts, "deltas": counts, "tool_calls": counts, "content_frames": counts}
        ),
    ),
)
def test_no_sealed_bill_exceeds_the_sizes_max_tokens_or_the_reservation(
    frames: list[int], prompt: int, completion: int, max_tokens: int, content: object
) -> None:
    claim = wire.Usage(
        prompt_tokens=prompt, cached_tokens=0, completion_tokens=completion, reasoning_tokens=0
    )
    attempt = _attempt(max_tokens)
    bill = _bill(attempt, frames, claim, content).bill
    assert bill.usage.completion <= min(completion, max_tokens, _size_bound(frames))
    assert bill.usage.prompt <= min(prompt, PLAIN_BYTES + DEFAULT_AUDIT_POLICY.prompt_slack_tokens)
    assert bill.charge.client_cost_nano <= reservation(max_tokens, len(ENVELOPE), 1000, PARAMS)
    # Whatever count the worker reported, the bill is at most the one without a count.
    uncounted = _bill(_attempt(max_tokens), frames, claim, None).bill
    assert bill.usage.completion <= uncounted.usage.completion
    assert bill.charge.client_cost_nano <= uncounted.charge.client_cost_nano
